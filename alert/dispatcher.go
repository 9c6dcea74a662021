package alert

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
	"github.com/tlswatch/tlswatch/watch"
)

// Options are the dispatcher's runtime inputs (what is not the operator's
// config file). Zero values are filled with defaults.
type Options struct {
	// Logger receives delivery failures and drops. Default: discard.
	Logger *slog.Logger
	// Now is the clock used for queue times and backoff. Default time.Now.
	// Tests pin it and call DeliverDue instead of running Run.
	Now func() time.Time
	// DialContext dials receivers (HTTP and SMTP). Pass the outbound
	// policy's dialer (netpolicy.Policy.Dialer) so that webhooks obey the
	// same address policy as probes. Default: a net.Dialer with a 10s
	// timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs verifies receivers' certificates (HTTPS and SMTP STARTTLS).
	// Default: the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds one delivery attempt (HTTP request, SMTP session).
	// Default 30s.
	Timeout time.Duration
	// Batch is how many due entries one pass takes. Default 100.
	Batch int
	// UserAgent for HTTP channels. Default "tlswatch".
	UserAgent string
}

func (o *Options) fill() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.DialContext == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		o.DialContext = d.DialContext
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.UserAgent == "" {
		o.UserAgent = "tlswatch"
	}
}

// Dispatcher turns watch events into outbox entries (one per admitting
// channel) and delivers them. It is the watch.Alerter of the process that
// owns the watches: Attach hands it the owned database's outbox and
// returns EnqueueTx, the commit hook, so entries commit in the transaction
// that records the change that caused them; Deliver delivers until the
// ownership ends.
//
// Delivery is at least once: an entry is deleted from the outbox in the same
// step that records success, after the receiver acknowledged it. A crash
// between the acknowledgement and that commit resends the entry once after
// restart, with the same delivery id (X-Tlswatch-Delivery, email
// Message-ID) and, for PagerDuty, the same dedup_key, so receivers can
// discard the repeat. Nothing acknowledged and committed is ever resent.
//
// Exactly one Dispatcher may use an outbox: the process that owns the
// watches, or every event would be queued twice.
type Dispatcher struct {
	cfg      Config
	opts     Options
	log      *slog.Logger
	channels map[string]*channelState
	kick     chan struct{}

	mu sync.Mutex
	ob watch.Outbox // of the current ownership period
}

type channelState struct {
	cfg    Channel
	sender sender
}

var _ watch.Alerter = (*Dispatcher)(nil)

// NewDispatcher validates cfg and builds the channels' senders.
func NewDispatcher(cfg Config, opts Options) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("alert: %w", err)
	}
	opts.fill()
	d := &Dispatcher{
		cfg: cfg, opts: opts, log: opts.Logger,
		channels: map[string]*channelState{},
		kick:     make(chan struct{}, 1),
	}
	client := newHTTPClient(&d.opts)
	for i := range cfg.Alerts.Channels {
		ch := cfg.Alerts.Channels[i]
		cs := &channelState{cfg: ch}
		switch ch.Type {
		case TypeWebhook:
			cs.sender = &webhookSender{url: ch.URL, secret: []byte(ch.Secret), client: client, userAgent: opts.UserAgent}
		case TypeSlack:
			cs.sender = &slackSender{url: ch.URL, client: client, userAgent: opts.UserAgent}
		case TypePagerDuty:
			cs.sender = &pagerDutySender{url: ch.URL, routingKey: ch.RoutingKey, client: client, userAgent: opts.UserAgent}
		case TypeEmail:
			s, err := newEmailSender(&ch, &d.opts)
			if err != nil {
				return nil, fmt.Errorf("alert: alerts.channels[%d]: %w", i, err)
			}
			cs.sender = s
		}
		d.channels[ch.Name] = cs
	}
	return d, nil
}

// Attach takes the outbox of the database this process now owns and
// returns the commit hook that fills it.
func (d *Dispatcher) Attach(ob watch.Outbox) watch.CommitHook {
	d.mu.Lock()
	d.ob = ob
	d.mu.Unlock()
	return d.EnqueueTx
}

func (d *Dispatcher) outbox() watch.Outbox {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ob
}

// Deliver runs the delivery loop (Run) on the attached outbox until ctx
// ends.
func (d *Dispatcher) Deliver(ctx context.Context) {
	if err := d.Run(ctx); err != nil {
		d.log.Error("alert delivery stopped", "err", err)
	}
}

// EnqueueTx queues, inside the watcher's commit (a watch.CommitHook), the
// deliveries of every event of the change for every channel that admits
// it, with the condition marks, so a crash can neither lose an alert whose
// stage is recorded as fired nor queue one whose state was rolled back.
// Delivery is kicked once the transaction commits. Transactions are
// serialised by the store, which makes the read-decide-write of the marks
// atomic.
//
// Admission per channel:
//   - the watch went down, or an expiry stage was crossed: sent when the
//     event's level is at or above the channel's min_level; the channel is
//     then marked as told about that condition;
//   - the watch is back up, or its certificate rotated: sent as a resolve to
//     every channel marked for the condition, whatever the level, so a
//     channel told "down" always hears "up" and PagerDuty incidents close;
//   - a watch added or removed: not an alert;
//   - anything else: sent by level; PagerDuty receives only triggers and
//     resolves, since other changes are not incidents.
func (d *Dispatcher) EnqueueTx(tx store.OutboxTx, c watch.Change) error {
	if len(d.channels) == 0 {
		return nil
	}
	queued := false
	for _, ev := range c.Events {
		marks, entries, err := d.plan(c.Watch, ev, tx.Marked)
		if err != nil {
			return err
		}
		if len(entries) == 0 && len(marks) == 0 {
			continue
		}
		if err := tx.Enqueue(marks, entries...); err != nil {
			return err
		}
		queued = true
	}
	if queued {
		tx.OnCommit(d.wake)
	}
	return nil
}

// wake makes Run start a delivery pass (without blocking: a pass is pending
// already when the channel is full).
func (d *Dispatcher) wake() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// condition says which condition an event opens or closes, if any.
func condition(w watch.Watch, ev watch.Event) (cond string, opens, resolves bool) {
	switch {
	case ev.Kind == watch.EventStatusChanged && w.State == watch.StateDown:
		return ConditionDown, true, false
	case ev.Kind == watch.EventStatusChanged && w.State == watch.StateUp:
		return ConditionDown, false, true
	case ev.Kind == watch.EventStageCrossed:
		return ConditionExpiry, true, false
	case ev.Kind == watch.EventRotated:
		return ConditionExpiry, false, true
	}
	return "", false, false
}

// plan decides, per channel, what the event means (see EnqueueTx) and
// returns the condition marks to set or clear and the outbox entries to
// queue. marked reads the current marks.
func (d *Dispatcher) plan(w watch.Watch, ev watch.Event, marked func(keys ...string) (map[string]bool, error)) (map[string]bool, []store.OutboxEntry, error) {
	if ev.Kind == watch.EventWatchAdded || ev.Kind == watch.EventWatchRemoved {
		return nil, nil, nil
	}
	now := d.opts.Now()
	base := newAlert(w, ev, now)
	cond, opens, resolves := condition(w, ev)
	var keys []string
	if resolves {
		for name := range d.channels {
			keys = append(keys, markKey(name, w.ID, cond))
		}
	}
	told, err := marked(keys...)
	if err != nil {
		return nil, nil, err
	}
	marks := map[string]bool{}
	var entries []store.OutboxEntry
	for _, ch := range d.cfg.Alerts.Channels {
		a := base
		a.ID = newDeliveryID()
		minLevel := ch.MinLevel
		if minLevel == "" {
			minLevel = d.cfg.Alerts.MinLevel
		}
		byLevel := probe.Severity(a.Level).Rank() >= probe.Severity(minLevel).Rank()
		key := markKey(ch.Name, w.ID, cond)
		switch {
		case opens && byLevel:
			a.Action, a.Condition = ActionTrigger, cond
			marks[key] = true
		case resolves && told[key]:
			a.Action, a.Condition = ActionResolve, cond
			marks[key] = false
		case byLevel && ch.Type != TypePagerDuty:
			a.Action = ActionNotify
		default:
			continue
		}
		if a.Condition != "" {
			a.DedupKey = dedupKey(a.WatchID, a.Condition)
		}
		payload, err := json.Marshal(&a)
		if err != nil {
			return nil, nil, fmt.Errorf("encode alert: %w", err)
		}
		entries = append(entries, store.OutboxEntry{Channel: ch.Name, Payload: payload, CreatedAt: now, NextAt: now})
	}
	return marks, entries, nil
}

// markKey names "channel was told about condition of watch". The NUL
// separator cannot occur in a channel name.
func markKey(channel, watchID, condition string) string {
	return "alert\x00" + channel + "\x00" + watchID + "\x00" + condition
}

// Stats counts what one delivery pass did.
type Stats struct {
	Delivered int // acknowledged by the receiver and removed
	Retrying  int // failed, rescheduled with backoff
	Dropped   int // permanent failure, gave up, or unknown channel
}

// Run delivers due entries until ctx ends, waking when a commit queued
// something or the earliest backoff expires. A panic in a pass is logged and
// the loop goes on. It returns nil once ctx is cancelled and every
// in-flight attempt has stopped; an attempt cut short stays queued.
func (d *Dispatcher) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// A queue shared with other processes also says when entries become
	// deliverable here without a commit of ours (a shard taken over).
	var ready <-chan struct{}
	if r, ok := d.outbox().(watch.OutboxReady); ok {
		ready = r.Ready()
	}
	for {
		st, err := d.DeliverDue(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			// Most likely the database cannot be written. Waiting the
			// longest backoff keeps a resend loop from hammering
			// receivers with alerts we cannot mark as delivered.
			d.log.Error("alert: delivery pass failed", "err", err, "retry_in", d.cfg.Alerts.Retry.MaxBackoff)
			wait = d.cfg.Alerts.Retry.MaxBackoff
		case st.Delivered+st.Dropped > 0:
			continue // progress: a channel's next entries may be ready now
		default:
			next, ok, err := d.outbox().NextDue()
			switch {
			case err != nil:
				d.log.Error("alert: reading the outbox failed", "err", err)
				wait = d.cfg.Alerts.Retry.MaxBackoff
			case !ok:
				wait = time.Hour // idle: a commit kicks us
			default:
				wait = max(next.Sub(d.opts.Now()), 0)
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-d.kick:
		case <-ready:
		case <-timer.C:
		}
	}
}

// DeliverDue makes one delivery pass: every entry due now (per channel in
// queue order, stopping at a channel's first failure) is attempted once.
// Channels are served concurrently so that one slow receiver does not delay
// the others. Run calls it; tests call it directly with a pinned clock.
func (d *Dispatcher) DeliverDue(ctx context.Context) (st Stats, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("alert: panic in delivery pass: %v\n%s", r, debug.Stack())
		}
	}()
	ob := d.outbox()
	if ob == nil {
		return st, errors.New("alert: no outbox attached")
	}
	due, err := ob.Due(d.opts.Now(), d.opts.Batch)
	if err != nil {
		return st, err
	}
	var order []string
	byChannel := map[string][]store.OutboxEntry{}
	for _, e := range due {
		if _, seen := byChannel[e.Channel]; !seen {
			order = append(order, e.Channel)
		}
		byChannel[e.Channel] = append(byChannel[e.Channel], e)
	}
	var (
		wg  sync.WaitGroup
		smu sync.Mutex
	)
	for _, name := range order {
		wg.Add(1)
		go func(name string, entries []store.OutboxEntry) {
			defer wg.Done()
			// A panic here must not take the process down: recover is
			// per goroutine, the pass's own recover does not cover us.
			// Reported as the pass's error, so Run backs off instead of
			// retrying the same entry in a tight loop.
			defer func() {
				if r := recover(); r != nil {
					smu.Lock()
					err = fmt.Errorf("alert: panic while delivering to channel %s: %v\n%s", name, r, debug.Stack())
					smu.Unlock()
				}
			}()
			s, cerr := d.deliverChannel(ctx, ob, name, entries)
			smu.Lock()
			st.Delivered += s.Delivered
			st.Retrying += s.Retrying
			st.Dropped += s.Dropped
			if cerr != nil && err == nil {
				err = cerr
			}
			smu.Unlock()
		}(name, byChannel[name])
	}
	wg.Wait()
	return st, err
}

// deliverChannel attempts entries of one channel in order and stops at the
// first transient failure: the channel is FIFO, so later entries wait behind
// it (Due enforces the same across passes). It also stops when the outbox
// cannot be written: the outcome of a send could not be recorded, and going
// on would resend in a loop.
func (d *Dispatcher) deliverChannel(ctx context.Context, ob watch.Outbox, name string, entries []store.OutboxEntry) (st Stats, storeErr error) {
	cs := d.channels[name]
	retry := d.cfg.Alerts.Retry
	failed := false
	for _, e := range entries {
		if ctx.Err() != nil || storeErr != nil {
			return st, storeErr
		}
		log := d.log.With("channel", name, "entry", e.ID)
		drop := func(reason string, err error) {
			if derr := ob.Drop(e.ID); derr != nil {
				storeErr = derr
				return
			}
			log.Error("alert: delivery dropped: "+reason, "attempts", e.Attempts, "err", err)
			st.Dropped++
		}
		if cs == nil {
			// The channel was renamed or removed from the config (or the
			// entry is unreadable): nobody to send it to.
			drop("no such channel in the config", nil)
			continue
		}
		var a Alert
		if err := json.Unmarshal(e.Payload, &a); err != nil {
			drop("unreadable entry", err)
			continue
		}
		log = log.With("delivery", a.ID, "watch", a.WatchID, "kind", a.Kind)
		now := d.opts.Now()
		expired := now.Sub(e.CreatedAt) >= retry.GiveUpAfter
		if failed && expired {
			// The receiver just failed; an alert this old is not worth
			// another timeout.
			drop(fmt.Sprintf("older than give_up_after (%s)", retry.GiveUpAfter), nil)
			continue
		}
		err := d.attempt(ctx, cs.sender, &a)
		if ctx.Err() != nil {
			// Cut short by shutdown: whether it arrived is unknown, so it
			// stays queued (at least once) without counting as a failure.
			return st, nil
		}
		switch {
		case err == nil:
			if err := ob.MarkDelivered(e.ID); err != nil {
				// Sent but not recorded: it will be resent, and the
				// receiver can drop it by delivery id.
				return st, fmt.Errorf("delivered entry %d but could not record it: %w", e.ID, err)
			}
			st.Delivered++
		case isPermanent(err):
			drop("permanent failure", err)
		case expired:
			drop(fmt.Sprintf("still failing after give_up_after (%s)", retry.GiveUpAfter), err)
			failed = true
		default:
			attempts := e.Attempts + 1
			wait := backoff(retry, attempts)
			var ra *retryAfterError
			if errors.As(err, &ra) && ra.after > wait {
				wait = min(ra.after, retry.MaxBackoff)
			}
			if rerr := ob.Reschedule(e.ID, now.Add(wait), attempts, err.Error()); rerr != nil {
				return st, rerr
			}
			log.Warn("alert: delivery failed, will retry", "attempts", attempts, "retry_in", wait, "err", err)
			st.Retrying++
			return st, nil
		}
	}
	return st, storeErr
}

// attempt runs one send with the per-attempt timeout; a panic in a sender
// becomes a transient error so that one bad entry cannot stop the loop (it
// backs off and is eventually dropped).
func (d *Dispatcher) attempt(ctx context.Context, s sender, a *Alert) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic while sending: %v", r)
			d.log.Error("alert: panic in sender", "err", err, "stack", string(debug.Stack()))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	return s.send(ctx, a)
}

// backoff is InitialBackoff·2^(attempts-1), capped at MaxBackoff.
func backoff(r Retry, attempts int) time.Duration {
	wait := r.InitialBackoff
	for i := 1; i < attempts && wait < r.MaxBackoff; i++ {
		wait *= 2
	}
	return min(wait, r.MaxBackoff)
}
