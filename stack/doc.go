// Package stack turns compose files into Shoal objects, as docker stack
// deploy does: Load parses, merges, interpolates and checks the files with
// compose-go (naming the file, line and key of what is wrong or not
// supported), Convert maps the project to service and network specs of one
// stack (namespace), pure and without side effects. Deploying the result is
// the CLI's job (cmd/shoal/stack.go).
package stack
