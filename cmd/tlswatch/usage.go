package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
)

// usageText is the head of each command's help: synopsis and examples. The
// flag list is generated from the FlagSet, so it cannot drift.
var usageText = map[string]string{
	"tlswatch": `usage: tlswatch [--db PATH] [--ca-file PATH] COMMAND [ARGS]
`,
	"serve": `usage: tlswatch serve [--http ADDR] [--token TOKEN] [--config FILE] [--metrics ADDR]
                      [--deny-private] [--allow-cidr CIDR] [--deny-cidr CIDR] [--client-cert NAME=CERT,KEY]
                      [--auth-issuer URL] [--public-url URL] [--auth-introspect URL] [--read-only]
                      [--metrics-token TOKEN] [--max-sessions N] [--max-subscriptions N]
                      [--max-connections N] [--max-message-bytes N]
                      [--etcd URL[,URL] [--node NAME] [--etcd-prefix PREFIX]]

Runs the MCP server: over stdio by default (what Claude and IDEs launch),
or over streamable HTTP at /mcp with --http.

Examples:
  tlswatch serve
  tlswatch serve --http 127.0.0.1:8931 --token "$(openssl rand -hex 16)"
  tlswatch serve --http 0.0.0.0:8931 --auth-issuer https://login.example.com --public-url https://tlswatch.example.com/mcp
  tlswatch serve --read-only
  tlswatch serve --config tlswatch.yaml --client-cert partner=/etc/tlswatch/partner.crt,/etc/tlswatch/partner.key
  tlswatch serve --http 0.0.0.0:8931 --etcd http://10.0.0.1:2379,http://10.0.0.2:2379 --node tw1

With --etcd the watches live in etcd instead of --db, shared by every node
started on the same etcd and prefix: each watch is probed by one live node,
every node serves the same view.
`,
	"check": `usage: tlswatch check TARGET [--ip IP] [--sni NAME] [--timeout DURATION] [--client-cert NAME=CERT,KEY] [--json]
                      [--deep] [--no-revocation] [--single-address] [--no-ari] [--no-caa]

Probes one target and prints a report: status, findings with what to do,
certificate, chain, TLS and timing. TARGET is host, host:port, [v6]:port or
https://host[:port][/path]; the port defaults to 443.
Exit code: 0 ok, 1 warning, 2 critical or down, 3 unknown (bad input).

Examples:
  tlswatch check mcp.example.com
  tlswatch check https://mcp.example.com/mcp --json
  tlswatch check mcp.example.com --ip 203.0.113.7 --timeout 3s
  tlswatch check mtls.example.com --client-cert me=client.crt,client.key
`,
	"watch": `usage: tlswatch watch add TARGET [--schedule SPEC] [--ip IP] [--sni NAME] [--timeout DURATION]
                          [--thresholds 30,14,7,1] [--ca-file PATH] [--client-cert NAME=CERT,KEY] [--mcp]
       tlswatch watch ls [--json]
       tlswatch watch rm ID|TARGET [--json]

Manages the watches that 'tlswatch serve' probes on a schedule; the
database (--db) is shared with the server, or, with --etcd, the watches
the nodes of a cluster share.
`,
	"watch add": `usage: tlswatch watch add TARGET [--schedule SPEC] [--ip IP] [--sni NAME] [--timeout DURATION]
                          [--thresholds 30,14,7,1] [--ca-file PATH] [--client-cert NAME=CERT,KEY] [--mcp]

Adds a watch (or updates the one for the same target) and probes it once now.
SPEC is a cron spec or @every DURATION (default "@every 6h"). The watch keeps
how it must be probed: the roots of --ca-file (by content), the client
certificate's name and files, SNI, IP and timeout, so 'tlswatch serve'
probes it the same way without those flags. --thresholds takes days (30 or
7d), hours (36h) and shares of the certificate's lifetime (20%); a stage
alerts once per certificate when the time left is within it and within the
last third of the lifetime.

Examples:
  tlswatch watch add mcp.example.com
  tlswatch watch add https://mcp.example.com/mcp --schedule "@every 1h" --thresholds 21,7,1
  tlswatch watch add internal.example.net --thresholds 36h,6h,20%
  tlswatch watch add internal.example.net --ca-file /etc/ssl/private-root.pem
`,
	"watch ls": `usage: tlswatch watch ls [--json]

Lists all watches with their state and last status. --json prints
{"watches": [...]}, the same as the list_watches tool.
`,
	"watch rm": `usage: tlswatch watch rm ID|TARGET [--json]

Removes a watch by its id (w_...) or by its target.
`,
	"expiring": `usage: tlswatch expiring [--within DAYS] [--json]

Lists watches whose certificate expires within DAYS (default 30; 0 lists
only those at or past expiry), already expired, or down; soonest first, with
the share of each certificate's lifetime left. --json prints
{"within_days": N, "watches": [...]}, the same as the list_expiring tool.
`,
	"scan": `usage: tlswatch scan FILE|- [--concurrency N] [--timeout DURATION] [--json]

Probes many targets, one per line (blank lines and # comments skipped; "-"
reads stdin). On a terminal it prints a line per target and a progress line
on stderr; otherwise (or with --json) one JSON object per line: the Report
plus "input" and "line", or "error" for a target that cannot be parsed.
Exit code: the worst of all targets (critical > unknown > warning > ok).

Examples:
  tlswatch scan endpoints.txt
  printf 'a.example.com\nb.example.com:8443\n' | tlswatch scan - > reports.jsonl
`,
	"migrate": `usage: tlswatch migrate --from-db PATH --etcd URL[,URL] [--etcd-prefix PREFIX] [--json]

Moves the watches of an embedded database into etcd, for nodes that share
them (tlswatch serve --etcd): each watch with its state, history and alert
state per certificate, the alerts still queued, and the alert feed. A watch
already in etcd (by id or target) is left as it is, so running it twice
moves nothing twice. The database is only read; stop the serve that uses it
first.

Examples:
  tlswatch migrate --from-db ~/.local/state/tlswatch/tlswatch.db --etcd http://10.0.0.1:2379
`,
	"db": `usage: tlswatch db check [FILE] [--json]
       tlswatch db backup [--backup-dir DIR] [--backup-keep N]
       tlswatch db restore [BACKUP] [--backup-dir DIR]
       tlswatch db stats [--json]
       tlswatch db compact

Maintenance of the database file (--db). check reads every page, runs
bbolt's consistency check and decodes every watch record. serve backs the
database up on its own (--backup-every); backup takes one now, restore
brings one back. stats says what the database holds (watches, samples,
aggregates, stored Reports) and the bytes each part takes. compact gives
back the space that pruned history left as free pages (bbolt reuses them
but never shrinks the file). backup and restore need the file free: stop
serve first; stats and compact are done by a running serve when there is
one.
`,
	"db check": `usage: tlswatch db check [FILE] [--json]

Checks the database (or FILE, e.g. a backup): every page read, bbolt's
consistency check, every watch record decoded. It needs the file free of a
running serve; check that serve's newest backup instead.
Exit code: 0 whole; 1 usable, but some watch records do not decode or one
of bbolt's two meta pages is damaged (bbolt rewrites it); 3 damaged (one
line on stderr says what to do) or not checkable.
`,
	"db backup": `usage: tlswatch db backup [--backup-dir DIR] [--backup-keep N]

Writes a consistent copy of the database next to it (or in DIR) as
<file>.backup-<UTC time>, mode 0600, checks the copy, and removes the oldest
backups beyond N.
`,
	"db restore": `usage: tlswatch db restore [BACKUP] [--backup-dir DIR]

Replaces the database with BACKUP, or with the newest backup that passes
the check. The replaced file is kept as <file>.damaged-<UTC time>. Refuses
while a tlswatch serve holds the database.

Examples:
  tlswatch db restore
  tlswatch db restore ~/.local/state/tlswatch/tlswatch.db.backup-20261126T030000Z
`,
	"db stats": `usage: tlswatch db stats [--json]

What the database holds and the bytes each part takes, with the retention
of the process that answers (the serve that owns the database, when one
runs).
`,
	"db compact": `usage: tlswatch db compact

Copies the database into a new file without its free pages and swaps it in.
While a serve owns the database, that serve does it (calls wait a moment,
nothing stops); otherwise this process does.
`,
}

func mainUsage() string {
	var b strings.Builder
	b.WriteString(usageText["tlswatch"])
	b.WriteString("\ntlswatch diagnoses and watches the TLS health of servers, first of all\nremote MCP servers over HTTPS.\n\nCommands:\n")
	for _, cmd := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", cmd.name, cmd.summary)
	}
	b.WriteString("\nShared flags (before or after the command):\n")
	b.WriteString(flagList(newFlagSet("tlswatch", &cli{}), true))
	b.WriteString("  --version\n        print the version and exit\n")
	b.WriteString("\nExit codes: 0 ok, 1 warning, 2 critical or down, 3 unknown (bad input, internal error).\n")
	b.WriteString("Run 'tlswatch help COMMAND' for a command's flags and examples.\n")
	return b.String()
}

func usageFor(fs *flag.FlagSet) string {
	if fs.Name() == "tlswatch" {
		return mainUsage()
	}
	var b strings.Builder
	b.WriteString(usageText[fs.Name()])
	if own := flagList(fs, false); own != "" {
		b.WriteString("\nFlags:\n")
		b.WriteString(own)
	}
	b.WriteString("\nShared flags:\n")
	b.WriteString(flagList(fs, true))
	return b.String()
}

func isShared(name string) bool {
	return name == "db" || name == "ca-file" || name == "min-interval" || strings.HasPrefix(name, "etcd")
}

// flagList formats the command's own flags (shared=false) or the shared ones
// with double dashes.
func flagList(fs *flag.FlagSet, shared bool) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if isShared(f.Name) != shared {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(&b, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(&b, " %s", name)
		}
		fmt.Fprintf(&b, "\n        %s", usage)
		if f.DefValue != "" && f.DefValue != "false" && !strings.Contains(usage, "default") {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	return b.String()
}

func runHelp(ctx context.Context, c *cli, args []string) (int, error) {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, mainUsage())
		return exitOK, nil
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] && cmd.name != "help" {
			return cmd.run(ctx, c, append(append([]string(nil), args[1:]...), "-h"))
		}
	}
	return exitUnknown, fmt.Errorf("help: unknown command %q", args[0])
}
