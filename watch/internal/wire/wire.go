// Package wire holds the argument and reply types of the owner/follower RPC
// (net/rpc requires them exported). Records travel as JSON inside gob frames
// so that they keep their exact JSON shape (gob would turn empty slices into
// nil, and "findings": [] into null).
package wire

// Service is the net/rpc service name.
const Service = "TLSWatch"

// Empty is the argument of calls that take none.
type Empty struct{}

// Err is an error crossing the socket, typed so the follower can rebuild
// *probe.FieldError and errors.Is(err, watch.ErrNotFound).
type Err struct {
	Kind   string // "field", "not_found", "handover", "deadline", "canceled", "other"
	Field  string
	Reason string
	Msg    string
}

// Reply carries a JSON payload or an error.
type Reply struct {
	Data []byte
	Err  *Err
}

// AddArgs: Spec is the JSON of watch.Spec.
type AddArgs struct {
	Spec     []byte
	Deadline int64 // unix ns; 0 means none
}

// RemoveArgs removes by ID or Target.
type RemoveArgs struct {
	ID, Target string
	Deadline   int64
}

// IDArgs names one watch.
type IDArgs struct{ ID string }

// DaysArgs is Expiring's window.
type DaysArgs struct{ Days int }

// HistoryArgs asks for the last Limit reports.
type HistoryArgs struct {
	ID    string
	Limit int
}

// HeadReply identifies the owner's event stream: Epoch changes with every new
// owner, Next is the sequence number of the next event.
type HeadReply struct {
	Epoch string
	Next  uint64
}

// EventsArgs long-polls for events from Next on.
type EventsArgs struct {
	Epoch string
	Next  uint64
}

// Event is watch.Event with the Watch as JSON.
type Event struct {
	Kind, Level, Message string
	Watch                []byte
}

// EventsReply returns the events in [Next-len(Events), Next).
type EventsReply struct {
	Epoch  string
	Events []Event
	Next   uint64
}
