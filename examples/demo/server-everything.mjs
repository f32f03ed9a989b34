// The demo upstream: @modelcontextprotocol/server-everything, resolved from this file
// (so it works in a checkout and in an installed package). Arguments pass through (`stdio`).
await import('@modelcontextprotocol/server-everything/dist/index.js');
