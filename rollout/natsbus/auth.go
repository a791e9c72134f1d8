// auth.go: job tokens. Anyone who may publish on a run's trajectory subject could otherwise report on any
// group: a spoofed "failed" report for a future group id would be obeyed, and junk published under a future
// group's Nats-Msg-Id would make the server discard the real group as a duplicate. So the learner gives every
// job an unguessable token, HMAC-SHA256(run secret, group id), carried in the job message; the worker echoes
// it in HdrToken of the group (or report) it publishes and publishes with Nats-Msg-Id = the token, so that
// only a holder of the job can occupy the group's de-duplication slot; and the learner terminates, and counts
// as CountForged, every message whose token does not verify before it touches its state. The run secret (32
// random bytes per run and stage, LoadOrCreateSecret) outlives the learner's process, so a group published
// for a learner that then restarted still verifies. Roles with least privilege on the server
// (deploy/nats/sparrow-roles.conf, RolesConfig) keep workers off the job and weight subjects and the
// streams' management.

package natsbus

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SecretSize is the size in bytes of a run secret.
const SecretSize = 32

// NewSecret returns SecretSize random bytes.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("natsbus: drawing a run secret: %w", err)
	}
	return b, nil
}

// LoadOrCreateSecret reads the run secret kept at path, or creates it (SecretSize random bytes, hex, mode
// 0600, its directory 0700) when there is none, so that a resumed learner signs its jobs as before.
func LoadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		sec, derr := hex.DecodeString(strings.TrimSpace(string(b)))
		if derr != nil || len(sec) != SecretSize {
			return nil, fmt.Errorf("natsbus: run secret %s: want %d hex-encoded bytes (delete the file to draw a new secret; groups published for the old one are then rejected as forged)", path, SecretSize)
		}
		return sec, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("natsbus: run secret: %w", err)
	}
	sec, err := NewSecret()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("natsbus: run secret: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another learner of the run created it first
		return LoadOrCreateSecret(path)
	}
	if err != nil {
		return nil, fmt.Errorf("natsbus: run secret: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(sec) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("natsbus: run secret %s: %w", path, err)
	}
	return sec, nil
}

// JobToken is the token of group id under secret: hex(HMAC-SHA256(secret, id)).
func JobToken(secret []byte, id string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id))
	return hex.EncodeToString(mac.Sum(nil))
}

// verifyToken says, in constant time, whether token is the job token of group id under secret.
func verifyToken(secret []byte, id, token string) bool {
	return hmac.Equal([]byte(token), []byte(JobToken(secret, id)))
}

// RolesConfig fills the placeholders of a nats-server roles template (deploy/nats/sparrow-roles.conf) with
// the names of one run and stage: @RUN@ and @STAGE@ (the subject tokens, as sparrow.@RUN@.jobs.@STAGE@) and
// @STREAM@ (the streams' common prefix, as @STREAM@_JOBS and the object store's stream OBJ_@STREAM@_W).
func (n Names) RolesConfig(template string) string {
	stream := strings.ToUpper("SPARROW_" + n.Prefix + "_" + n.Stage)
	return strings.NewReplacer("@RUN@", n.Prefix, "@STAGE@", n.Stage, "@STREAM@", stream).Replace(template)
}
