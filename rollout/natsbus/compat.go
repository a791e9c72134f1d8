// compat.go: what the bus needs of a nats-server, checked before it relies on it. The server must be
// MinServerVersion or later (the JetStream client, github.com/nats-io/nats.go/jetstream, needs 2.9.0: it
// creates and updates consumers through the $JS.API.CONSUMER.CREATE.<stream>.<consumer> API that 2.9.0
// introduced; the rest the bus uses, Nats-Msg-Id de-duplication, NakWithDelay, DoubleAck, the Object
// Store, is older) and must have JetStream enabled for the connection's account. Connect checks the version
// (the server announces it when the client connects); CheckServer checks both, and Setup and RunWorkers call
// it before their first JetStream request, so that a server without JetStream fails at once instead of
// answering "no responders" until rl.bus.wait_s. terminate ends a message for good on every supported
// server: a termination with a reason ("+TERM reason") is only understood from 2.10.4 on, older servers
// ignore it and redeliver the message forever.

package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// MinServerVersion is the oldest nats-server the bus works with.
	MinServerVersion = "2.9.0"
	// termReasonVersion is the first nats-server that understands a termination with a reason.
	termReasonVersion = "2.10.4"
	// checkTimeout bounds the JetStream check's request.
	checkTimeout = 5 * time.Second
)

// serverVersion is a nats-server version: major.minor.patch and an optional pre-release ("beta", "RC.1").
type serverVersion struct {
	major, minor, patch int
	pre                 string
}

// parseVersion reads a server version such as "2.9.10", "v2.10.4" or "2.11.0-RC.1" (build metadata after
// a '+' is ignored).
func parseVersion(s string) (serverVersion, error) {
	core, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(s), "v"), "+")
	core, pre, _ := strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return serverVersion{}, fmt.Errorf("version %q is not major.minor.patch", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return serverVersion{}, fmt.Errorf("version %q is not major.minor.patch", s)
		}
		n[i] = v
	}
	return serverVersion{major: n[0], minor: n[1], patch: n[2], pre: pre}, nil
}

// atLeast says whether v is floor or later; floor is a release. A pre-release comes before its release
// (2.9.0-beta < 2.9.0), as in semantic versioning.
func (v serverVersion) atLeast(floor serverVersion) bool {
	a, b := [3]int{v.major, v.minor, v.patch}, [3]int{floor.major, floor.minor, floor.patch}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return v.pre == ""
}

// versionAtLeast says whether the server version s (as announced) is floor (a release) or later; false
// when s does not parse.
func versionAtLeast(s, floor string) bool {
	v, err := parseVersion(s)
	if err != nil {
		return false
	}
	f, err := parseVersion(floor)
	if err != nil {
		panic("natsbus: bad version constant " + floor)
	}
	return v.atLeast(f)
}

// checkVersion refuses a server version older than MinServerVersion, or one that does not parse.
func checkVersion(s string) error {
	if _, err := parseVersion(s); err != nil {
		return fmt.Errorf("unknown nats-server version: %w; Sparrow needs nats-server %s or later", err, MinServerVersion)
	}
	if !versionAtLeast(s, MinServerVersion) {
		return fmt.Errorf("nats-server version %s is too old: Sparrow needs nats-server %s or later (the JetStream client it uses requires %s)",
			s, MinServerVersion, MinServerVersion)
	}
	return nil
}

// CheckServer checks that the server nc is connected to is MinServerVersion or later and has JetStream
// enabled for nc's account. Only definite answers fail it: a server that does not answer within a few
// seconds (busy, or a request the account may not make) passes, and the bus's own retries judge later.
func CheckServer(ctx context.Context, nc *nats.Conn) error {
	url := nc.ConnectedUrlRedacted()
	if v := nc.ConnectedServerVersion(); v != "" { // "" while reconnecting: the version is checked again on use
		if err := checkVersion(v); err != nil {
			return fmt.Errorf("natsbus: nats-server at %s: %w", url, err)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("natsbus: nats-server at %s: %w", url, err)
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("natsbus: nats-server at %s has JetStream enabled, but not for this connection's account: enable it for the account (jetstream: enabled in the account's config, or JetStream limits in its JWT): %w", url, err)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("natsbus: nats-server at %s has JetStream disabled: start it with -js (or jetstream {} in its config): %w", url, err)
	}
	return nil
}

// terminate tells the server never to deliver m again, with reason where the server understands one
// (2.10.4 on; the reason shows in its advisories). Older servers, and a connection that is reconnecting,
// get a plain termination: an older server ignores a termination with a reason altogether.
func terminate(nc *nats.Conn, m jetstream.Msg, reason string) error {
	if versionAtLeast(nc.ConnectedServerVersion(), termReasonVersion) {
		return m.TermWithReason(reason)
	}
	return m.Term()
}
