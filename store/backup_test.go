package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Backups are checked copies, mode 0600, named by time, the oldest removed
// beyond Keep; Restore brings back the newest good one (skipping a damaged
// newer one), keeps the replaced file aside, and refuses while the database
// is held.
func TestBackupRotateRestore(t *testing.T) {
	path := writeFixture(t, 50)
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := t0
	var infos []BackupInfo
	for i := range 4 {
		info, err := db.Backup(BackupOptions{Keep: 3, Now: func() time.Time { return at.Add(time.Duration(i) * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	all, err := Backups(path, "")
	if err != nil || len(all) != 3 || all[0].Path != infos[3].Path || all[2].Path != infos[1].Path {
		t.Fatalf("after 4 backups with Keep 3: %+v, %v", all, err)
	}
	fi, err := os.Stat(all[0].Path)
	if err != nil || fi.Mode().Perm() != 0o600 || !strings.HasSuffix(all[0].Path, "tlswatch.db.backup-20261126T150000Z") {
		t.Errorf("backup %s: %v, %v", all[0].Path, fi.Mode(), err)
	}
	if _, err := Restore(path, "", "", at); !errors.Is(err, ErrLocked) {
		t.Errorf("Restore while held: %v", err)
	}
	db.Close()

	// The database is damaged, and so is the newest backup.
	raw, _ := os.ReadFile(path)
	for pg := 2; pg < len(raw)/4096; pg++ {
		copy(raw[pg*4096:], garbagePage(uint64(pg)))
	}
	os.WriteFile(path, raw, 0o600)
	os.WriteFile(all[0].Path, raw, 0o600)

	res, err := Restore(path, "", "", at)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != all[1].Path || res.Check.Watches != 50 || res.Aside != path+".damaged-20261126T120000Z" {
		t.Errorf("Restore: %+v", res)
	}
	if rep, err := CheckFile(path, time.Second); err != nil || rep.Damaged() || rep.Watches != 50 {
		t.Errorf("restored file: %s, %v", rep.String(), err)
	}
	if aside, err := os.ReadFile(res.Aside); err != nil || string(aside) != string(raw) {
		t.Errorf("the damaged file was not kept aside: %v", err)
	}
	if _, err := Restore(path, all[0].Path, "", at); err == nil || !strings.Contains(err.Error(), "damaged too") {
		t.Errorf("Restore of a damaged backup: %v", err)
	}
	if _, err := Restore(filepath.Join(t.TempDir(), "x.db"), "", "", at); err == nil || !strings.Contains(err.Error(), "no backup") {
		t.Errorf("Restore without backups: %v", err)
	}
}

// The loop backs up when its clock says so, reports each result, skips a
// damaged database, and stops with Close.
func TestBackupLoop(t *testing.T) {
	path := writeFixture(t, 5)
	ticks := make(chan time.Time)
	waits := make(chan time.Duration, 10)
	reports := make(chan error, 10)
	now := t0
	db, err := Open(path, Options{Backup: BackupOptions{
		Every: 24 * time.Hour, Keep: 2,
		Now:    func() time.Time { return now },
		After:  func(d time.Duration) <-chan time.Time { waits <- d; return ticks },
		Report: func(_ BackupInfo, err error) { reports <- err },
	}})
	if err != nil {
		t.Fatal(err)
	}
	if d := <-waits; d != backupSettle {
		t.Errorf("first wait %v, want %v", d, backupSettle)
	}
	ticks <- now
	if err := <-reports; err != nil {
		t.Fatal(err)
	}
	// The next one is due a day after the newest.
	if d := <-waits; d != 24*time.Hour {
		t.Errorf("wait after a backup: %v, want 24h", d)
	}
	if all, _ := Backups(path, ""); len(all) != 1 {
		t.Errorf("backups: %+v", all)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
