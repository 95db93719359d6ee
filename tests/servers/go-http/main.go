// Go's net/http under up-run --exec: the listener from socket activation
// (fd 3), READY=1 on $NOTIFY_SOCKET, http.Server.Shutdown on SIGTERM.
package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		panic(err)
	}
	pid := strconv.Itoa(os.Getpid())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Up-Pid", pid)
		w.Write([]byte("Hello World"))
	})}
	if path := os.Getenv("NOTIFY_SOCKET"); path != "" {
		if c, err := net.Dial("unixgram", path); err == nil {
			c.Write([]byte("READY=1"))
			c.Close()
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		<-stop
		srv.Shutdown(context.Background())
		close(done)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		panic(err)
	}
	<-done
}
