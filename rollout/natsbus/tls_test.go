// tls_test.go: Connect with the rl.bus TLS options against a real nats-server with TLS: a CA and a server
// certificate (127.0.0.1) and a client certificate are generated in the test; a connection with the CA (and,
// for mutual TLS, the client certificate) works end to end, while a plain-text client, a client trusting
// another CA, and (mutual TLS) a client without a certificate are refused with a clear error.
package natsbus

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testCA is a self-signed CA that issues certificates for the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf certificate (server: 127.0.0.1 SAN; client: client auth) and writes cert and key as
// PEM files into dir.
func (ca *testCA) issue(t *testing.T, dir, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return certFile, keyFile
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSServer starts nats-server on 127.0.0.1 with TLS; mutual asks for and verifies client certificates.
func startTLSServer(t *testing.T, ca *testCA, certFile, keyFile string, mutual bool) *server.Server {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if mutual {
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		TLSConfig: tc, TLS: true, TLSVerify: mutual, TLSTimeout: 2}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("TLS nats-server not ready after 10 s")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func TestConnectTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newTestCA(t, "sparrow test CA"), newTestCA(t, "another CA")
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other-ca.pem")
	writeFile(t, caFile, ca.pem)
	writeFile(t, otherFile, other.pem)
	srvCert, srvKey := ca.issue(t, dir, "server", true)
	cliCert, cliKey := ca.issue(t, dir, "client", false)
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not a certificate\n"))

	for _, mutual := range []bool{false, true} {
		srv := startTLSServer(t, ca, srvCert, srvKey, mutual)
		url := srv.ClientURL()
		cases := []struct {
			name string
			o    ConnOptions
			want string // regexp the error must match; "" = connects
		}{
			{"CA and client certificate", ConnOptions{TLSCA: caFile, TLSCert: cliCert, TLSKey: cliKey}, ""},
			{"CA only", ConnOptions{TLSCA: caFile}, map[bool]string{false: "", true: "tls: certificate required|closed by remote after TLS handshake"}[mutual]},
			{"another CA", ConnOptions{TLSCA: otherFile, TLSCert: cliCert, TLSKey: cliKey}, "certificate signed by unknown authority"},
			{"no TLS options (system roots)", ConnOptions{}, "certificate signed by unknown authority"},
			{"missing CA file", ConnOptions{TLSCA: filepath.Join(dir, "nope.pem")}, "rl.bus.tls_ca"},
			{"CA file without a certificate", ConnOptions{TLSCA: garbage}, "no PEM certificate"},
		}
		for _, c := range cases {
			t.Run(map[bool]string{false: "tls/", true: "mtls/"}[mutual]+c.name, func(t *testing.T) {
				c.o.URL, c.o.Log, c.o.Name = url, quiet(), "tls-test"
				nc, err := Connect(c.o)
				if c.want != "" {
					if err == nil {
						nc.Close()
						t.Fatalf("connected, want an error with %q", c.want)
					}
					if !regexp.MustCompile(c.want).MatchString(err.Error()) {
						t.Fatalf("error %q, want one with %q", err, c.want)
					}
					t.Logf("refused: %v", err)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				if st, err := nc.TLSConnectionState(); err != nil || !st.HandshakeComplete {
					t.Fatalf("TLS connection state: %+v, %v", st, err)
				}
				sub, err := nc.SubscribeSync("tls.echo")
				if err != nil {
					t.Fatal(err)
				}
				if err := nc.Publish("tls.echo", []byte("over TLS")); err != nil {
					t.Fatal(err)
				}
				m, err := sub.NextMsg(5 * time.Second)
				if err != nil || string(m.Data) != "over TLS" {
					t.Fatalf("echo: %v %v", m, err)
				}
			})
		}
		// a plain-text client: the server announces tls_required and drops a CONNECT sent in the clear
		t.Run(map[bool]string{false: "tls/", true: "mtls/"}[mutual]+"plain text refused", func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(conn)
			info, err := r.ReadString('\n')
			if err != nil || !strings.Contains(info, `"tls_required":true`) {
				t.Fatalf("server greeting %q (%v), want INFO with tls_required", info, err)
			}
			if _, err := conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
				t.Fatal(err)
			}
			reply, err := r.ReadString('\n')
			if err == nil && strings.HasPrefix(reply, "PONG") {
				t.Fatalf("a plain-text client got %q: the server accepted it", reply)
			}
			t.Logf("plain-text client: reply %q, err %v", reply, err)
		})
	}
}
