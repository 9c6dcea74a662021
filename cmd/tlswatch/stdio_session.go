package main

import (
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// stdioSession is the one client session of the stdio transport.
type stdioSession struct {
	notes       chan mcp.JSONRPCNotification
	initialized atomic.Bool
	level       atomic.Value // mcp.LoggingLevel
	info        atomic.Value // mcp.Implementation
	caps        atomic.Value // mcp.ClientCapabilities
	version     atomic.Value // string
}

var (
	_ server.SessionWithLogging         = (*stdioSession)(nil)
	_ server.SessionWithClientInfo      = (*stdioSession)(nil)
	_ server.SessionWithProtocolVersion = (*stdioSession)(nil)
)

// stdioNotificationBuffer is what a slow client may fall behind by before
// notifications are dropped (mcp-go's own size).
const stdioNotificationBuffer = 100

func newStdioSession() *stdioSession {
	return &stdioSession{notes: make(chan mcp.JSONRPCNotification, stdioNotificationBuffer)}
}

// stdioSessionID is the ID of the one stdio session.
const stdioSessionID = "stdio"

func (s *stdioSession) SessionID() string { return stdioSessionID }

func (s *stdioSession) NotificationChannel() chan<- mcp.JSONRPCNotification { return s.notes }

// Initialize marks the session ready; until logging/setLevel, log
// notifications below error are not sent (mcp-go's default).
func (s *stdioSession) Initialize() {
	if s.level.Load() == nil {
		s.level.Store(mcp.LoggingLevelError)
	}
	s.initialized.Store(true)
}

func (s *stdioSession) Initialized() bool { return s.initialized.Load() }

func (s *stdioSession) SetLogLevel(level mcp.LoggingLevel) { s.level.Store(level) }

func (s *stdioSession) GetLogLevel() mcp.LoggingLevel {
	if l, ok := s.level.Load().(mcp.LoggingLevel); ok {
		return l
	}
	return mcp.LoggingLevelError
}

func (s *stdioSession) GetClientInfo() mcp.Implementation {
	v, _ := s.info.Load().(mcp.Implementation)
	return v
}

func (s *stdioSession) SetClientInfo(v mcp.Implementation) { s.info.Store(v) }

func (s *stdioSession) GetClientCapabilities() mcp.ClientCapabilities {
	v, _ := s.caps.Load().(mcp.ClientCapabilities)
	return v
}

func (s *stdioSession) SetClientCapabilities(v mcp.ClientCapabilities) { s.caps.Store(v) }

func (s *stdioSession) ProtocolVersion() string {
	v, _ := s.version.Load().(string)
	return v
}

func (s *stdioSession) SetProtocolVersion(v string) { s.version.Store(v) }
