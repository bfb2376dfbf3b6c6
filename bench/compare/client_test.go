package compare

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The minimal client that drives every server: a handshake, then masked
// frames encoded once and read back with a plain header parser. It
// allocates nothing per message, so the figures are the server's.

type rawClient struct {
	nc  net.Conn
	br  *bufio.Reader
	hdr [14]byte
	buf []byte
}

func dialClient(addr string, bufSize int) (*rawClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	var kb [16]byte
	rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, bufSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		nc.Close()
		return nil, fmt.Errorf("handshake answered %s", resp.Status)
	}
	nc.SetDeadline(time.Time{})
	return &rawClient{nc: nc, br: br}, nil
}

// maskedFrame encodes one final client frame (masked, as RFC 6455 §5.3
// requires of clients).
func maskedFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op, 0x80}
	switch n := len(payload); {
	case n < 126:
		b[1] |= byte(n)
	case n <= 0xFFFF:
		b[1] |= 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] |= 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= key[i&3]
	}
	return b
}

// readFrame reads one server message (unmasked), joining fragments, into
// the client's buffer; control frames are returned as they come.
func (c *rawClient) readFrame() (op byte, payload []byte, err error) {
	c.buf = c.buf[:0]
	for {
		h := c.hdr[:2]
		if _, err := io.ReadFull(c.br, h); err != nil {
			return 0, nil, err
		}
		fin, fop := h[0]&0x80 != 0, h[0]&0x0F
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, c.hdr[2:4]); err != nil {
				return 0, nil, err
			}
			n = uint64(binary.BigEndian.Uint16(c.hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(c.br, c.hdr[2:10]); err != nil {
				return 0, nil, err
			}
			n = binary.BigEndian.Uint64(c.hdr[2:10])
		}
		if h[1]&0x80 != 0 || n > 16<<20 {
			return 0, nil, errors.New("bad server frame")
		}
		start := len(c.buf)
		if uint64(cap(c.buf)-start) < n {
			c.buf = append(c.buf[:cap(c.buf)], make([]byte, int(n)-(cap(c.buf)-start))...)
		}
		c.buf = c.buf[:start+int(n)]
		if _, err := io.ReadFull(c.br, c.buf[start:]); err != nil {
			return 0, nil, err
		}
		if fop != 0 {
			op = fop
		}
		if fin {
			return op, c.buf, nil
		}
	}
}

// The child process: the test binary run again with these variables
// holds the client ends of many connections.
const (
	childAddrEnv  = "CHATD_COMPARE_CHILD_ADDR"
	childConnsEnv = "CHATD_COMPARE_CHILD_CONNS"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(childAddrEnv); addr != "" {
		n, _ := strconv.Atoi(os.Getenv(childConnsEnv))
		if err := runChild(addr, n, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stdout, "error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild dials n connections to addr, says "ready", then answers each
// "wait N" line with "ok" once its connections together received N data
// messages. It ends when its standard input does (the parent is done or
// gone), closing every connection with a reset so that no TIME_WAIT is
// left to run the port range dry over many runs.
func runChild(addr string, n int, in io.Reader, out io.Writer) error {
	var (
		total atomic.Int64
		mu    sync.Mutex
		conns []*rawClient
		wg    sync.WaitGroup
		errc  = make(chan error, 1)
	)
	sem := make(chan struct{}, 32)
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dialClient(addr, 1024)
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				op, _, err := c.readFrame()
				if err != nil {
					return
				}
				if op == 1 || op == 2 {
					total.Add(1)
				}
			}
		}()
	}
	fmt.Fprintln(out, "ready")
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		want, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "wait "), 10, 64)
		if err != nil {
			return fmt.Errorf("bad command %q", sc.Text())
		}
		deadline := time.Now().Add(2 * time.Minute)
		for total.Load() < want {
			if time.Now().After(deadline) {
				return fmt.Errorf("received %d messages, want %d", total.Load(), want)
			}
			time.Sleep(20 * time.Microsecond)
		}
		fmt.Fprintln(out, "ok")
	}
	for _, c := range conns {
		if tc, ok := c.nc.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.nc.Close()
	}
	readers.Wait()
	return nil
}

// clients is the parent's handle on a child process.
type clients struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startClients runs a child holding n connections to addr and waits until
// they are all open. The caller stops it.
func startClients(addr string, n int) (*clients, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childAddrEnv+"="+addr, childConnsEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &clients{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	if line := c.line(); line != "ready" {
		c.stop()
		return nil, fmt.Errorf("client process: %s", line)
	}
	return c, nil
}

func (c *clients) line() string {
	if c.out.Scan() {
		return c.out.Text()
	}
	return fmt.Sprintf("ended (%v)", c.out.Err())
}

// wait returns once the child's connections received total messages.
func (c *clients) wait(total int64) error {
	fmt.Fprintf(c.in, "wait %d\n", total)
	if line := c.line(); line != "ok" {
		return fmt.Errorf("client process: %s", line)
	}
	return nil
}

// stop ends the child (its standard input closes) and waits for it.
func (c *clients) stop() {
	if c.in == nil {
		return
	}
	c.in.Close()
	c.in = nil
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		c.cmd.Process.Kill() // by its own PID: our child
		<-done
	}
}
