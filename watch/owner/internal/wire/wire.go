// Package wire holds the types of the owner/follower calls (net/rpc wants
// them exported). There is one generic call, not one per method: a method
// of watch.Service by name with its arguments as JSON. Values travel as
// JSON inside gob frames so that they keep their exact JSON shape (gob
// would turn empty slices into nil, and "findings": [] into null).
package wire

// Service is the net/rpc service name.
const Service = "TLSWatch"

// Empty is the argument of calls that take none.
type Empty struct{}

// Request calls Method of watch.Service with Args, the JSON array of its
// arguments after the context.
type Request struct {
	Method   string
	Args     []byte
	Deadline int64 // unix ns; 0 means none
}

// Response carries the method's result (JSON; empty for a method that
// returns only an error) or its error.
type Response struct {
	Result []byte
	Err    *Error
}

// Error is an error crossing the socket: its message, and what the caller
// may test it for. Type names a registered error type (errors.As) whose
// value is Data (JSON); Is names a registered sentinel (errors.Is).
type Error struct {
	Msg  string
	Type string
	Data []byte
	Is   string
}

// HeadReply identifies the owner's change stream: Epoch changes with every
// new owner, Next is the sequence number of the next change.
type HeadReply struct {
	Epoch string
	Next  uint64
}

// EventsArgs long-polls for changes from Next on.
type EventsArgs struct {
	Epoch string
	Next  uint64
}

// EventsReply returns the changes (each the JSON of a watch.Change) in
// [Next-len(Changes), Next).
type EventsReply struct {
	Epoch   string
	Changes [][]byte
	Next    uint64
}
