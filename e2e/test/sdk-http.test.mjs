// The TypeScript SDK suite over streamable HTTP: StreamableHTTPClientTransport
// to `tlswatch serve --http 127.0.0.1:<free port> --ca-file <lab root> --db <tmp>`.
import { defineSuite } from './suite.mjs';

defineSuite('http');
