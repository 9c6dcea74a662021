// The TypeScript SDK suite over stdio: StdioClientTransport spawns
// `tlswatch serve --ca-file <lab root> --db <tmp>`.
import { defineSuite } from './suite.mjs';

defineSuite('stdio');
