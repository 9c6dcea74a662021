// Command authserver runs the test authorization server (internal/testidp)
// as a standalone process for the npm end-to-end suites: RFC 8414 metadata,
// a JWKS, and a client-credentials token endpoint whose JWT access tokens
// carry the RFC 8707 resource as their audience. It serves plain HTTP on
// 127.0.0.1 (tlswatch accepts plain http issuers on loopback only), prints
// one JSON line, {"issuer": "http://127.0.0.1:PORT"}, and runs until stdin
// reaches EOF or it gets SIGINT/SIGTERM.
//
//	authserver -client ID:SECRET:SCOPE[,SCOPE...] [-client ...]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tlswatch/tlswatch/internal/testidp"
)

type clientFlags map[string]testidp.Client

func (c clientFlags) String() string { return "" }

func (c clientFlags) Set(v string) error {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("want ID:SECRET:SCOPE[,SCOPE...], got %q", v)
	}
	c[parts[0]] = testidp.Client{Secret: parts[1], Scopes: strings.Split(parts[2], ",")}
	return nil
}

func main() {
	clients := clientFlags{}
	flag.Var(clients, "client", "a client_credentials client `ID:SECRET:SCOPE[,SCOPE...]` (repeatable)")
	flag.Parse()
	idp, err := testidp.New(testidp.Options{Clients: clients})
	if err != nil {
		fmt.Fprintln(os.Stderr, "authserver:", err)
		os.Exit(3)
	}
	defer idp.Close()
	// The one line the test reads to find the server: stdout is this
	// program's interface.
	if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"issuer": idp.Issuer}); err != nil {
		os.Exit(3)
	}
	done := make(chan os.Signal, 1)
	signal.Notify(done, os.Interrupt, syscall.SIGTERM)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		done <- syscall.SIGTERM
	}()
	<-done
}
