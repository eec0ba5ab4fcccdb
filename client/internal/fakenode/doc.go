// Package fakenode is the fake coordinator nodes of the tests of package
// client and client/crowd: QUIC listeners that answer each request as the
// test says.
package fakenode
