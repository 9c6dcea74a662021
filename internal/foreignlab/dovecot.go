package foreignlab

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// StartDovecot runs dovecot (dovecot-imapd) as an IMAP server that offers
// STARTTLS on its port (ssl = required: no login before the upgrade), with
// base_dir, state and logs in a directory of its own and no users beyond a
// static passdb. Run as root, it uses the dovenull and dovecot users the
// package creates; otherwise every process runs as the current user, with
// the login chroot off.
func StartDovecot(t testing.TB, cfg TLS) *Server {
	t.Helper()
	if cfg.ClientAuth != NoClientCert || len(cfg.OCSPStaple) > 0 || len(cfg.ALPN) > 0 || len(cfg.DHParams) > 0 {
		t.Fatalf("foreignlab: the dovecot lab supports certificates, versions and ciphers only")
	}
	dir := newDir(t, "dovecot")
	f := cfg.write(t, dir, "")
	for _, d := range []string{"run", "state", "home"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatalf("foreignlab: %v", err)
		}
	}
	users := dovecotUsers(t)
	logPath := filepath.Join(dir, "dovecot.log")
	conf := filepath.Join(dir, "dovecot.conf")
	return start(t, dovecotBin, dir, func(port int) (launch, error) {
		var b strings.Builder
		fmt.Fprintf(&b, "base_dir = %s\nstate_dir = %s\nlog_path = %s\n",
			filepath.Join(dir, "run"), filepath.Join(dir, "state"), logPath)
		b.WriteString("protocols = imap\nlisten = 127.0.0.1\nssl = required\ndisable_plaintext_auth = yes\n")
		fmt.Fprintf(&b, "ssl_cert = <%s\nssl_key = <%s\n", f.cert, f.key)
		if vs := cfg.versionsIn(); len(vs) > 0 {
			fmt.Fprintf(&b, "ssl_min_protocol = %s\n", openSSLVersion(vs[0]))
		}
		if cfg.Ciphers != "" {
			fmt.Fprintf(&b, "ssl_cipher_list = %s\n", cfg.Ciphers)
		}
		b.WriteString(users.settings)
		b.WriteString("passdb {\n  driver = static\n  args = password=lab\n}\n")
		fmt.Fprintf(&b, "userdb {\n  driver = static\n  args = uid=%s gid=%s home=%s\n}\n", users.uid, users.gid, filepath.Join(dir, "home"))
		fmt.Fprintf(&b, "service imap-login {\n%s  inet_listener imap {\n    address = 127.0.0.1\n    port = %d\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\n", users.chroot, port)
		b.WriteString(users.services)
		writeFile(t, conf, []byte(b.String()))
		// -F: stay in the foreground, so the test owns the master process.
		return launch{args: []string{"-F", "-c", conf}, logFiles: []string{logPath, conf}}, nil
	})
}

// dovecotAccounts are the user settings of a lab dovecot.
type dovecotAccounts struct {
	settings string // default_login_user, default_internal_user
	uid, gid string // of the static userdb
	chroot   string // inside service imap-login
	services string // more service blocks
}

func dovecotUsers(t testing.TB) dovecotAccounts {
	t.Helper()
	if os.Geteuid() == 0 {
		return dovecotAccounts{
			settings: "default_login_user = dovenull\ndefault_internal_user = dovecot\n",
			uid:      "65534", gid: "65534",
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("foreignlab: current user: %v", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatalf("foreignlab: current group: %v", err)
	}
	// The internal group owns the unix sockets of dovecot's services; an
	// unprivileged master can only hand them to its own group.
	return dovecotAccounts{
		settings: fmt.Sprintf("default_login_user = %s\ndefault_internal_user = %s\ndefault_internal_group = %s\n",
			u.Username, u.Username, g.Name),
		uid: u.Uid, gid: u.Gid,
		chroot:   "  chroot =\n",
		services: "service anvil {\n  chroot =\n}\n",
	}
}
