// Command echo is the test cluster's stand-in for what runs "inside" kwok's
// fake pods:
//
//   - a TCP echo server: kwok's ClusterPortForward rule points every pod port
//     at it, so bytes sent through `kubectl port-forward` (kubectl -> API
//     server -> kwok's kubelet-like server -> here) come back unchanged;
//   - optionally (-log-file) a ticker that appends one CRI-format log line per
//     -interval to a file; kwok's ClusterAttach/ClusterLogs rules serve that
//     file, so `kubectl attach` (which follows new lines) and `kubectl logs`
//     show output.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback only)")
	logFile := flag.String("log-file", "", "if set, append a CRI-format log line to this file every -interval")
	interval := flag.Duration("interval", time.Second, "log line interval")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatalf("bad -listen %q: %v", *addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("refusing to listen on non-loopback address %q", *addr)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("echo listening on %s", ln.Addr())

	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		go tick(f, *interval)
	}

	for {
		c, err := ln.Accept()
		if err != nil {
			log.Print(err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func(c net.Conn) {
			defer c.Close()
			n, err := io.Copy(c, c)
			log.Printf("%s: echoed %d bytes (err=%v)", c.RemoteAddr(), n, err)
		}(c)
	}
}

// tick writes lines in the CRI container log format that kwok reads:
// "<RFC3339Nano time> <stream> <tag> <message>".
func tick(w io.Writer, every time.Duration) {
	for i := 1; ; i++ {
		now := time.Now().UTC()
		if _, err := fmt.Fprintf(w, "%s stdout F kubegql-test-pod tick %d at %s\n",
			now.Format(time.RFC3339Nano), i, now.Format(time.RFC3339)); err != nil {
			log.Printf("log-file: %v", err)
		}
		time.Sleep(every)
	}
}
