package owner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// owned holds what the owner role needs to shut down.
type owned struct {
	db    *store.DB
	eng   *watch.Engine
	srv   *rpcServer
	ring  *ring
	unsub func()

	alertsCancel context.CancelFunc
	alertsDone   chan struct{}
	pruneCancel  context.CancelFunc
	pruneDone    chan struct{}
}

// notifyFunc adapts a function to watch.Notifier.
type notifyFunc func(watch.Change)

func (f notifyFunc) Changed(c watch.Change) { f(c) }

// tryOwn attempts to take the database. It returns (false, nil) when another
// process holds it, and an error only for failures that retrying will not
// fix on the first attempt.
func (m *Manager) tryOwn() (bool, error) {
	opts := m.cfg.Store
	opts.Timeout = m.cfg.LockTimeout
	if opts.Now == nil && m.cfg.Engine.Clock != nil {
		opts.Now = m.cfg.Engine.Clock.Now // retention on the engine's one clock
	}
	db, err := store.Open(m.cfg.DBPath, opts)
	if errors.Is(err, store.ErrLocked) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("watch: %w", err)
	}
	ecfg := m.cfg.Engine
	if m.cfg.Alerts != nil {
		ecfg.Hook = m.attach(db.Outbox())
	}
	eng, err := watch.NewEngine(db, ecfg)
	if err != nil {
		db.Close()
		return false, err
	}
	o := &owned{db: db, eng: eng, ring: newRing(4096)}
	o.unsub = eng.Subscribe(notifyFunc(func(c watch.Change) {
		o.ring.append(c)
		m.hub.Publish(c)
	}))
	if o.srv, err = listen(m.cfg.SocketPath, eng, o.ring, m.log); err != nil {
		// Still the owner and fully usable here; other processes cannot
		// reach us and will keep waiting. Say so loudly.
		m.log.Error("watch: cannot serve other processes; they will wait for this one to exit", "socket", m.cfg.SocketPath, "err", err)
	}
	m.own = o
	m.setRole(local{eng}, true)
	if m.cfg.Alerts != nil {
		m.deliver(o)
	}
	if !m.cfg.Engine.NoScheduler {
		m.prune(o)
	}
	m.log.Info("watch: this process owns the database and runs the scheduler", "db", m.cfg.DBPath, "socket", m.cfg.SocketPath)
	return true, nil
}

// attach runs Alerts.Attach; a panic there costs the alerts, not the
// ownership.
func (m *Manager) attach(ob watch.Outbox) (hook watch.CommitHook) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("watch: attaching alert delivery panicked", "panic", r)
			hook = nil
		}
	}()
	return m.cfg.Alerts.Attach(ob)
}

// deliver runs Alerts.Deliver for this ownership period.
func (m *Manager) deliver(o *owned) {
	ctx, cancel := context.WithCancel(m.ctx)
	done := make(chan struct{})
	o.alertsCancel, o.alertsDone = cancel, done
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				m.log.Error("watch: alert delivery panicked", "panic", r)
			}
		}()
		m.cfg.Alerts.Deliver(ctx)
	}()
}

func (m *Manager) releaseOwn() {
	o := m.own
	if o == nil {
		return
	}
	m.own = nil
	m.setRole(nil, false)
	if o.alertsCancel != nil {
		o.alertsCancel()
		<-o.alertsDone
	}
	o.stopPrune()
	// Followers first: closing the socket makes them try the lock, which
	// they get as soon as the file is closed below.
	if o.srv != nil {
		o.srv.close()
	}
	o.eng.Close()
	o.unsub()
	if err := o.db.Close(); err != nil {
		m.log.Error("watch: close database", "err", err)
	}
	o.ring.close()
}

// run is the role loop: own, or follow until the owner goes away, then try
// to own again.
func (m *Manager) run(owned bool) {
	defer close(m.done)
	for {
		if owned {
			<-m.ctx.Done()
			m.releaseOwn()
			return
		}
		if m.ctx.Err() != nil {
			return
		}
		cli, err := dial(m.cfg.SocketPath)
		m.setSquat(err)
		if err == nil {
			// Never followed anyone: skip the owner's old changes.
			fresh := m.fEpoch == ""
			if err := m.follow(cli, fresh); err != nil {
				m.log.Debug("watch: lost the owner", "err", err)
			}
			m.setRole(nil, false)
			cli.close()
			if m.ctx.Err() != nil {
				return
			}
		}
		owned = m.retryOwn()
		if owned {
			continue
		}
		// Nobody reachable and the lock is held (the owner is starting or
		// stopping): pace the retries.
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(jitter(m.cfg.RetryInterval)):
		}
	}
}

// setSquat records whether the last dial met a squatter (nil: it did
// not), reports a new one once, and wakes callers waiting for a role so
// that they fail at once instead of waiting out their deadline.
func (m *Manager) setSquat(err error) {
	var se *squatError
	if !errors.As(err, &se) {
		se = nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if (se == nil) == (m.squat == nil) && (se == nil || se.Error() == m.squat.Error()) {
		return
	}
	m.squat = se
	if se != nil {
		m.log.Error("watch: cannot reach the database owner; calls fail until it is reachable or this process can own the database", "err", se)
		close(m.changed)
		m.changed = make(chan struct{})
	}
}

// retryOwn is tryOwn in the role loop: a failure is remembered (calls
// report it) and logged once.
func (m *Manager) retryOwn() bool {
	owned, err := m.tryOwn()
	if err != nil {
		m.mu.Lock()
		repeated := m.lastErr != nil && m.lastErr.Error() == err.Error()
		m.lastErr = err
		m.mu.Unlock()
		if !repeated {
			m.log.Error("watch: cannot open the database", "err", err)
		}
	}
	return owned
}

// follow serves as a follower through cli until the connection fails or the
// Manager closes; it streams the owner's changes to local subscribers.
func (m *Manager) follow(cli *rpcClient, fresh bool) error {
	epoch, next, err := cli.head(m.ctx)
	if err != nil {
		return err
	}
	if !fresh {
		// A reconnect to the same owner resumes where it stopped; a new owner
		// delivers everything it published since it started, so nothing of
		// the handover window is lost.
		next = 0
		if epoch == m.fEpoch {
			next = m.fNext
		}
	}
	m.fEpoch, m.fNext = epoch, next
	m.setRole(cli, false)
	m.log.Info("watch: following the database owner", "socket", m.cfg.SocketPath)
	stop := context.AfterFunc(m.ctx, cli.close)
	defer stop()
	for {
		cs, ep, nx, err := cli.events(m.ctx, epoch, next)
		if err != nil {
			return err
		}
		if ep != epoch {
			return errTransport{errors.New("owner changed")}
		}
		next = nx
		m.fNext = nx
		for _, c := range cs {
			m.hub.Publish(c)
		}
	}
}
