// Package admission decides who may enter the cluster and who must leave it:
// join rate limits, unique node names, the reaper of nodes that joined but
// never reported, and the deny list of revoked node certificates.
package admission
