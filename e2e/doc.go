// Package e2e runs real shoal binaries on hosts made of network namespaces joined by a
// bridge, and owns the scenarios that kill, restart and cut off those hosts. Tests need
// root and iproute2; they skip with a message otherwise.
package e2e
