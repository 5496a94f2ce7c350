// Package api holds the wire types shared by the CLI, the nodes and the
// managers, and the Go HTTP client for the /v1 API.
package api
