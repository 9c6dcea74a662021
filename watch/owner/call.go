package owner

// One call path for every method of watch.Service. A Manager method is a
// one-line forwarder to call[T]; the current role's backend runs it: the
// owner invokes the engine's method by name (reflection over
// watch.Service), a follower sends the name and the JSON of the arguments
// to the owner, which invokes it the same way. Adding a method to
// watch.Service therefore touches the interface, the engine, one
// forwarder line here, and a test. Errors cross the socket generically:
// the registered sentinels by name, the registered error types as JSON.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/watch"
	"github.com/tlswatch/tlswatch/watch/owner/internal/wire"
)

// backend is one role's way of running a call.
type backend interface {
	call(ctx context.Context, method string, args []any, out any) error
}

// call runs method with args on the current role and decodes its result
// into a T.
func call[T any](ctx context.Context, m *Manager, method string, args ...any) (T, error) {
	var out T
	err := m.do(ctx, func(b backend) error { return b.call(ctx, method, args, &out) })
	return out, err
}

var (
	serviceType = reflect.TypeFor[watch.Service]()
	ctxType     = reflect.TypeFor[context.Context]()
	errorType   = reflect.TypeFor[error]()
)

// method returns the watch.Service method of that name if it can be
// called remotely: a context first, a value and an error (or only an
// error) back.
func method(svc watch.Service, name string) (reflect.Value, error) {
	mt, ok := serviceType.MethodByName(name)
	t := mt.Type
	if !ok || t.NumIn() == 0 || t.In(0) != ctxType || t.NumOut() < 1 || t.NumOut() > 2 || t.Out(t.NumOut()-1) != errorType {
		return reflect.Value{}, fmt.Errorf("watch: %q is not a method of watch.Service that can be called remotely", name)
	}
	return reflect.ValueOf(svc).MethodByName(name), nil
}

// invoke calls the method with ctx and args (already of the parameter
// types) and returns its value (invalid when it returns only an error).
func invoke(fn reflect.Value, ctx context.Context, args []reflect.Value) (reflect.Value, error) {
	out := fn.Call(append([]reflect.Value{reflect.ValueOf(ctx)}, args...))
	var err error
	if e := out[len(out)-1]; !e.IsNil() {
		err = e.Interface().(error)
	}
	if len(out) == 2 {
		return out[0], err
	}
	return reflect.Value{}, err
}

// local runs calls on this process's engine.
type local struct{ svc watch.Service }

func (l local) call(ctx context.Context, name string, args []any, out any) error {
	fn, err := method(l.svc, name)
	if err != nil {
		return err
	}
	ft := fn.Type()
	if len(args) != ft.NumIn()-1 {
		return fmt.Errorf("watch: %s takes %d arguments, got %d", name, ft.NumIn()-1, len(args))
	}
	in := make([]reflect.Value, len(args))
	for i, a := range args {
		in[i] = reflect.New(ft.In(i + 1)).Elem()
		if a != nil {
			in[i].Set(reflect.ValueOf(a))
		}
	}
	res, err := invoke(fn, ctx, in)
	if err != nil {
		return handover(err)
	}
	if res.IsValid() {
		reflect.ValueOf(out).Elem().Set(res)
	}
	return nil
}

// serveCall runs a follower's request on the owner's engine.
func serveCall(ctx context.Context, svc watch.Service, req wire.Request) ([]byte, error) {
	fn, err := method(svc, req.Method)
	if err != nil {
		return nil, err
	}
	ft := fn.Type()
	var raw []json.RawMessage
	if err := json.Unmarshal(req.Args, &raw); err != nil || len(raw) != ft.NumIn()-1 {
		return nil, fmt.Errorf("watch: bad arguments for %s", req.Method)
	}
	in := make([]reflect.Value, len(raw))
	for i, r := range raw {
		p := reflect.New(ft.In(i + 1))
		if err := json.Unmarshal(r, p.Interface()); err != nil {
			return nil, fmt.Errorf("watch: decode argument %d of %s: %w", i+1, req.Method, err)
		}
		in[i] = p.Elem()
	}
	res, err := invoke(fn, ctx, in)
	if err != nil || !res.IsValid() {
		return nil, err
	}
	return json.Marshal(res.Interface())
}

// errTransport marks failures of the path to the owner (connection dropped,
// owner shutting down): the call is retried once a role is re-established.
type errTransport struct{ err error }

func (e errTransport) Error() string { return "watch: owner unreachable: " + e.err.Error() }
func (e errTransport) Unwrap() error { return e.err }

var errOwnerClosing = errTransport{errors.New("owner is shutting down")}

// handover maps "the engine or its database was closed under us" (the
// owner is shutting down while the call ran) to a retryable error.
func handover(err error) error {
	if errors.Is(err, watch.ErrClosed) || errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return errOwnerClosing
	}
	return err
}

// sentinels are the errors callers test with errors.Is; they cross the
// socket by name.
var sentinels = map[string]error{
	"not_found": watch.ErrNotFound,
	"deadline":  context.DeadlineExceeded,
	"canceled":  context.Canceled,
}

// errorTypes are the error types callers test with errors.As; they cross
// the socket as JSON.
var errorTypes = map[string]reflect.Type{
	"field": reflect.TypeFor[*probe.FieldError](),
}

func toWire(err error) *wire.Error {
	w := &wire.Error{Msg: err.Error()}
	var te errTransport
	if errors.As(err, &te) {
		w.Is = "handover"
		return w
	}
	for name, t := range errorTypes {
		target := reflect.New(t)
		if errors.As(err, target.Interface()) {
			if data, jerr := json.Marshal(target.Elem().Interface()); jerr == nil {
				w.Type, w.Data = name, data
				return w
			}
		}
	}
	for name, s := range sentinels {
		if errors.Is(err, s) {
			w.Is = name
			break
		}
	}
	return w
}

// remoteErr is an error from the owner, keeping its message and what it
// is (for errors.Is).
type remoteErr struct {
	msg string
	is  error
}

func (e *remoteErr) Error() string { return e.msg }
func (e *remoteErr) Unwrap() error { return e.is }

func fromWire(w *wire.Error) error {
	if t, ok := errorTypes[w.Type]; ok {
		v := reflect.New(t.Elem())
		if json.Unmarshal(w.Data, v.Interface()) == nil {
			return v.Interface().(error)
		}
	}
	if w.Is == "handover" {
		return errTransport{errors.New(w.Msg)}
	}
	if s, ok := sentinels[w.Is]; ok {
		return &remoteErr{w.Msg, s}
	}
	return errors.New("owner: " + w.Msg)
}
