// Package dns owns service discovery inside task network namespaces: a resolver per task
// netns on 127.0.0.11:53 answering service names and tasks.SERVICE from a Table the agent
// keeps current, and forwarding every other name to the host's upstream resolvers.
package dns
