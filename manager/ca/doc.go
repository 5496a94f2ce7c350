// Package ca owns the cluster's root certificate authority, the join tokens that pin it,
// the node certificates it signs (node ID, role and cluster in the subject), and the TLS
// configurations every node-to-node and client connection is built from.
package ca
