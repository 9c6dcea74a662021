package foreignlab_test

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEStacks keeps the README's table of verified stacks in step
// with the case table: every case is listed in its stack's row, and the
// table lists no case that does not exist.
func TestREADMEStacks(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "## TLS stacks the diagnoses are verified against\n")
	if !ok {
		t.Fatal("README has no section \"TLS stacks the diagnoses are verified against\"")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	// Row keys: the stack part of a case name, found in the first cell.
	rows := map[string]string{}
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		first := strings.ToLower(cells[1])
		for _, stack := range []string{"nginx", "openssl", "gnutls", "stunnel", "dovecot", "raw"} {
			if strings.Contains(first, stack) {
				rows[stack] = cells[3]
			}
		}
	}
	listed := map[string]bool{}
	for _, c := range cases() {
		stack, name, _ := strings.Cut(c.Name, "/")
		row, ok := rows[stack]
		if !ok {
			t.Errorf("README: no row for the %s stack", stack)
			continue
		}
		if !strings.Contains(row, "`"+name+"`") {
			t.Errorf("README: the %s row does not list the case `%s`", stack, name)
		}
		listed[stack+"/"+name] = true
	}
	for stack, row := range rows {
		parts := strings.Split(row, "`")
		for i := 1; i < len(parts); i += 2 { // the text between backticks
			name := parts[i]
			if strings.Contains(name, "://") {
				continue // a scheme, not a case
			}
			if !listed[stack+"/"+name] {
				t.Errorf("README: the %s row lists `%s`, which is not a case", stack, name)
			}
		}
	}
}
