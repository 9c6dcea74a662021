package store

// Backups are consistent copies of the open database (bbolt's tx.WriteTo in
// a read transaction, so writers go on meanwhile), written next to it as
// <file>.backup-<UTC time> with mode 0600. Each copy is checked (CheckFile)
// before it is kept: WriteTo copies pages without reading them, so a copy of
// a damaged file would be damaged too, and a backup that cannot be restored
// is worse than none. Only the newest Keep are kept.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Backup defaults.
const (
	DefaultBackupEvery = 24 * time.Hour
	DefaultBackupKeep  = 3
	// backupSettle delays the first automatic backup after Open, so that
	// it does not compete with loading the watches.
	backupSettle = time.Minute
	backupStamp  = "20060102T150405Z"
	backupInfix  = ".backup-"
)

// BackupOptions configure backups.
type BackupOptions struct {
	// Every is the time between automatic backups; 0 turns them off.
	Every time.Duration
	// Keep is how many backups are kept, the oldest removed first.
	// Default DefaultBackupKeep.
	Keep int
	// Dir is where backups go. Default: the database's directory.
	Dir string
	// Report, when set, is called after each automatic backup with what
	// it wrote, or why it failed.
	Report func(BackupInfo, error)
	// Now and After are the clock (tests replace them). Default time.Now
	// and time.After.
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
}

func (o *BackupOptions) fill(dbPath string) {
	if o.Keep <= 0 {
		o.Keep = DefaultBackupKeep
	}
	if o.Dir == "" {
		o.Dir = filepath.Dir(dbPath)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.After == nil {
		o.After = time.After
	}
}

// BackupInfo is one backup file.
type BackupInfo struct {
	Path string    `json:"path"`
	Time time.Time `json:"time"`
	Size int64     `json:"size"`
}

// Backup writes a backup of the database now, checks it, and removes the
// oldest beyond o.Keep. A backup that fails the check is not kept, and the
// database is then marked damaged (the copy holds its pages as they are).
func (db *DB) Backup(o BackupOptions) (BackupInfo, error) {
	o.fill(db.path)
	at := o.Now().UTC().Truncate(time.Second)
	final := filepath.Join(o.Dir, filepath.Base(db.path)+backupInfix+at.Format(backupStamp))
	tmp, err := os.CreateTemp(o.Dir, "."+filepath.Base(db.path)+".backup-tmp-*")
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup %s: %w", db.path, err)
	}
	defer os.Remove(tmp.Name())
	size, err := db.writeTo(tmp)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup %s: %w", db.path, err)
	}
	rep, err := CheckFile(tmp.Name(), time.Second)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup %s: check the copy: %w", db.path, err)
	}
	if rep.Damaged() {
		return BackupInfo{}, db.bolt.damage(&DamageError{Path: db.path, Op: "backup", Detail: rep.Problems[0]})
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup %s: %w", db.path, err)
	}
	if err := syncDir(o.Dir); err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup %s: %w", db.path, err)
	}
	return BackupInfo{Path: final, Time: at, Size: size}, rotate(db.path, o.Dir, o.Keep)
}

// writeTo copies a consistent snapshot into f, syncs and closes it.
func (db *DB) writeTo(f *os.File) (int64, error) {
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(f)
		return err
	})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// Backups lists the backups of the database at dbPath found in dir (the
// database's directory when empty), newest first.
func Backups(dbPath, dir string) ([]BackupInfo, error) {
	if dir == "" {
		dir = filepath.Dir(dbPath)
	}
	prefix := filepath.Base(dbPath) + backupInfix
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: list backups in %s: %w", dir, err)
	}
	var out []BackupInfo
	for _, e := range entries {
		stamp, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		at, err := time.Parse(backupStamp, stamp)
		if err != nil {
			continue
		}
		info := BackupInfo{Path: filepath.Join(dir, e.Name()), Time: at}
		if fi, err := e.Info(); err == nil {
			info.Size = fi.Size()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

func rotate(dbPath, dir string, keep int) error {
	all, err := Backups(dbPath, dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range all[min(keep, len(all)):] {
		if err := os.Remove(b.Path); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: remove old backups: %w", err)
	}
	return nil
}

// backupLoop runs automatic backups while the database is open.
type backupLoop struct {
	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
}

func startBackups(db *DB, o BackupOptions) *backupLoop {
	if o.Every <= 0 {
		return nil
	}
	o.fill(db.path)
	l := &backupLoop{quit: make(chan struct{}), done: make(chan struct{})}
	go l.run(db, o)
	return l
}

func (l *backupLoop) run(db *DB, o BackupOptions) {
	defer close(l.done)
	for {
		select {
		case <-o.After(nextBackup(db.path, o)):
		case <-l.quit:
			return
		}
		if db.bolt.Damaged() != nil {
			continue // a copy now would copy the damage; the last good ones stay
		}
		info, err := db.Backup(o)
		if o.Report != nil {
			o.Report(info, err)
		}
	}
}

// nextBackup is the wait until the next backup is due: Every after the
// newest, but not sooner than backupSettle from now.
func nextBackup(dbPath string, o BackupOptions) time.Duration {
	wait := backupSettle
	if all, err := Backups(dbPath, o.Dir); err == nil && len(all) > 0 {
		wait = max(wait, all[0].Time.Add(o.Every).Sub(o.Now()))
	}
	return wait
}

func (l *backupLoop) stop() {
	if l == nil {
		return
	}
	l.stopOnce.Do(func() { close(l.quit) })
	<-l.done
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// From is the backup restored.
	From string
	// Aside is where the replaced file was moved ("" when there was none).
	Aside string
	// Check is the check of the restored file.
	Check CheckReport
}

// Restore replaces the database at dbPath with a backup: from, or when from
// is "" the newest backup in dir (see Backups) that passes CheckFile. The
// replaced file is kept aside as <file>.damaged-<UTC time>. It refuses
// (ErrLocked) while another process holds the database.
func Restore(dbPath, from, dir string, now time.Time) (RestoreResult, error) {
	unlock, err := lockFile(dbPath)
	if err != nil {
		return RestoreResult{}, err
	}
	defer unlock()
	res, err := pickBackup(dbPath, from, dir)
	if err != nil {
		return res, err
	}
	tmp := filepath.Join(filepath.Dir(dbPath), "."+filepath.Base(dbPath)+".restore-tmp")
	if err := copyFile(res.From, tmp); err != nil {
		os.Remove(tmp)
		return res, fmt.Errorf("store: restore %s: %w", dbPath, err)
	}
	if _, err := os.Stat(dbPath); err == nil {
		res.Aside = dbPath + ".damaged-" + now.UTC().Format(backupStamp)
		if err := os.Rename(dbPath, res.Aside); err != nil {
			os.Remove(tmp)
			return res, fmt.Errorf("store: restore %s: move the old file aside: %w", dbPath, err)
		}
	}
	if err := os.Rename(tmp, dbPath); err != nil {
		return res, fmt.Errorf("store: restore %s: %w", dbPath, err)
	}
	return res, syncDir(filepath.Dir(dbPath))
}

// pickBackup chooses and checks the backup to restore.
func pickBackup(dbPath, from, dir string) (RestoreResult, error) {
	if from != "" {
		rep, err := CheckFile(from, time.Second)
		if err != nil {
			return RestoreResult{}, fmt.Errorf("store: backup %s: %w", from, err)
		}
		if rep.Damaged() {
			return RestoreResult{}, fmt.Errorf("store: backup %s is damaged too: %s", from, rep.Problems[0])
		}
		return RestoreResult{From: from, Check: rep}, nil
	}
	all, err := Backups(dbPath, dir)
	if err != nil {
		return RestoreResult{}, err
	}
	var tried []string
	for _, b := range all {
		rep, err := CheckFile(b.Path, time.Second)
		if err == nil && !rep.Damaged() {
			return RestoreResult{From: b.Path, Check: rep}, nil
		}
		tried = append(tried, filepath.Base(b.Path))
	}
	if len(tried) == 0 {
		return RestoreResult{}, fmt.Errorf("store: no backup of %s in %s (%s*)", dbPath, dirOf(dbPath, dir), filepath.Base(dbPath)+backupInfix)
	}
	return RestoreResult{}, fmt.Errorf("store: no valid backup of %s: %s all fail the check", dbPath, strings.Join(tried, ", "))
}

func dirOf(dbPath, dir string) string {
	if dir == "" {
		return filepath.Dir(dbPath)
	}
	return dir
}

// copyFile copies src to dst (mode 0600) and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
