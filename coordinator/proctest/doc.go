// Package proctest runs programs as separate processes for tests (the
// fedrec command's process tests, the browser tests): output to files
// the test reads while the process runs, SIGTERM at the end of the test,
// the log's tail when it failed.
package proctest
