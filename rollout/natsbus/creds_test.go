// creds_test.go: Connect with a creds file (a user JWT and its nkey seed, the decentralised-auth form NATS
// deployments use) against a real nats-server in operator mode: an operator signs an account, the account
// signs a user, the server trusts the operator and resolves the account from memory. The user's creds file
// connects and round-trips a message; a creds file of a user signed by another account is refused, and the
// seed never appears in the connection's description.
package natsbus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// must panics on a setup error (the test then fails with the stack).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// userCreds writes a creds file for a new user signed by account key acct.
func userCreds(t *testing.T, dir, name string, acct nkeys.KeyPair) string {
	t.Helper()
	user := must(nkeys.CreateUser())
	upub := must(user.PublicKey())
	apub := must(acct.PublicKey())
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.IssuerAccount = apub
	ujwt := must(uc.Encode(acct))
	seed := must(user.Seed())
	creds := must(jwt.FormatUserConfig(ujwt, seed))
	path := filepath.Join(dir, name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConnectCredsFile(t *testing.T) {
	dir := t.TempDir()
	op := must(nkeys.CreateOperator())
	oc := jwt.NewOperatorClaims(must(op.PublicKey()))
	oc.Name = "sparrow-test"
	ojwt := must(oc.Encode(op))
	opClaims := must(jwt.DecodeOperatorClaims(ojwt))

	acct := must(nkeys.CreateAccount())
	apub := must(acct.PublicKey())
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "rl"
	ajwt := must(ac.Encode(op))

	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server (operator mode) not ready")
	}
	url := ns.ClientURL()

	good := userCreds(t, dir, "worker", acct)
	o := ConnOptions{URL: url, CredsFile: good, Name: "creds-test"}
	nc, err := Connect(o)
	if err != nil {
		t.Fatalf("connect with a valid creds file: %v", err)
	}
	sub, err := nc.SubscribeSync("sparrow.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("sparrow.test", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(msg.Data) != "hello" {
		t.Fatalf("round trip: %v %v", err, msg)
	}
	nc.Close()
	seed, _ := os.ReadFile(good)
	if strings.Contains(o.String(), "SUA") || strings.Contains(o.String(), string(seed)) {
		t.Fatalf("connection description shows the seed: %s", o)
	}

	// a user signed by an account the operator never signed is refused
	other := must(nkeys.CreateAccount())
	bad := userCreds(t, dir, "intruder", other)
	if nc, err := Connect(ConnOptions{URL: url, CredsFile: bad, Name: "intruder"}); err == nil {
		nc.Close()
		t.Fatal("a creds file of an unknown account was accepted")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("refusal does not say why: %v", err)
	}
}
