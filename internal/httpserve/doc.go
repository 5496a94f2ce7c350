// Package httpserve builds Shoal's HTTP servers with bounded reads, writes and idle
// connections, a cap on TLS connections without a client certificate, and a way for
// long-lived responses (long polls, log streams) to lift the deadlines explicitly.
package httpserve
