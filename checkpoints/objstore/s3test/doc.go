// Package s3test runs a real S3-compatible server for tests: Start launches versitygw (posix backend) on
// 127.0.0.1 with a random free port and a temporary root directory, and the Server can be stopped and
// restarted on the same directory and port to test faults; its posix directory exposes objects as plain
// files (ObjectPath) to test corruption. The binary is looked up in $PATH, then in $(go env GOPATH)/bin
// (install it with .ci/install-s3.sh). When it is missing, tests skip, unless SPARROW_REQUIRE_S3=1 (CI
// sets it), where they fail with instructions (SkipOrFail).
package s3test
