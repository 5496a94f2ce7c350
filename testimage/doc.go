// Package testimage builds the busybox OCI image that Shoal's tests run: one
// layer made from the host's busybox-static binary, written by hand as an OCI
// archive or layout, imported into containerd or pushed to a plain-HTTP registry.
package testimage
