// Package natstest runs Debian's nats-server (the external server of Sparrow's bus tests, 2.9.x in CI) as a
// child process on loopback for tests: Start, Stop, Kill and Restart on the same port and store, and
// RolesConfig for the least-privilege configuration of deploy/nats. Tests skip without the server, or fail
// when SPARROW_REQUIRE_NATS=1.
package natstest
