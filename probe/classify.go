package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// classifyNetError maps a failed dial or handshake to a finding, by error
// type, never by message text.
func classifyNetError(err error, stage string, deadline time.Duration) Finding {
	for _, c := range dialClassifiers {
		if f, ok := c(err); ok {
			return f
		}
	}
	var (
		rh    tls.RecordHeaderError
		opErr *net.OpError
		alert tls.AlertError
	)
	while := "while connecting"
	if stage == "handshake" {
		while = "during the TLS handshake"
	}
	switch {
	case isTimeout(err):
		return NewFinding(CodeTimeout, fmt.Sprintf("no answer %s within the %s deadline", while, deadline))
	case errors.Is(err, syscall.ECONNREFUSED):
		return NewFinding(CodeConnectionRefused, "TCP connection refused: nothing listens on that port, or a firewall rejects it")
	case isReset(err) && stage == "handshake":
		return NewFinding(CodeConnectionReset, "the server accepted the TCP connection, then reset it during the TLS handshake: the port is open, but whatever answers there (a TLS listener that failed to load its certificate, a firewall, a load balancer without a backend) aborts every TLS client")
	case isReset(err):
		return NewFinding(CodeConnectionRefused, fmt.Sprintf("connection reset by the peer %s", while))
	case errors.As(err, &rh):
		hint := ""
		if strings.HasPrefix(string(rh.RecordHeader[:]), "HTTP/") {
			hint = " (it answered in plain HTTP)"
		}
		return NewFinding(CodeNotTLS, "the peer answered, but not with TLS"+hint+": this port does not speak TLS")
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("the server aborted the handshake with the alert %q: no common protocol version or cipher suite, or it rejects the SNI", opErr.Err.Error()))
	case errors.As(err, &alert):
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("handshake failed with alert %q", alert.Error()))
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return NewFinding(CodeHandshakeFailed, "the server closed the connection during the TLS handshake without an alert (often: no TLS on this port for this SNI, or no common version)")
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return NewFinding(CodeConnectionRefused, fmt.Sprintf("the address is unreachable: %v", errors.Unwrap(err)))
	case stage == "connect":
		return NewFinding(CodeConnectionRefused, fmt.Sprintf("could not connect: %v", err))
	default:
		return NewFinding(CodeHandshakeFailed, fmt.Sprintf("TLS handshake failed: %v", err))
	}
}

// isReset: the peer reset the connection (or it broke under our write).
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
