package compare

import (
	"bufio"
	"bytes"
	"compress/flate"
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
	"syscall"
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

// deflateOffer asks for permessage-deflate without context takeover in
// either direction: every library here supports that.
const deflateOffer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

func dialClient(addr string, bufSize int) (*rawClient, error) {
	return dialClientExt(addr, bufSize, "")
}

// dialClientExt dials offering the extension ext (none when empty) and
// fails when a compression offer is declined.
func dialClientExt(addr string, bufSize int, ext string) (*rawClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	var kb [16]byte
	rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	if ext != "" {
		req += "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	req += "\r\n"
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
	if ext != "" && !strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		nc.Close()
		return nil, fmt.Errorf("compression declined: %q", resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	nc.SetDeadline(time.Time{})
	return &rawClient{nc: nc, br: br}, nil
}

// compressedFrame encodes payload as one masked, compressed final frame
// (RFC 7692 §7.2.1: a sync-flushed DEFLATE stream without its last four
// bytes, RSV1 set).
func compressedFrame(op byte, payload []byte) []byte {
	var b bytes.Buffer
	fw, _ := flate.NewWriter(&b, flate.BestSpeed)
	fw.Write(payload)
	fw.Flush()
	frame := maskedFrame(op, b.Bytes()[:b.Len()-4])
	frame[0] |= 0x40
	return frame
}

// inflate undoes compressedFrame's compression for a server's message.
func inflate(p []byte) ([]byte, error) {
	tail := []byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}
	return io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(tail))))
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
	op, payload, _, err = c.readMessage()
	return op, payload, err
}

// readMessage is readFrame that also says whether the message was
// compressed (RSV1 on its first frame).
func (c *rawClient) readMessage() (op byte, payload []byte, compressed bool, err error) {
	c.buf = c.buf[:0]
	for {
		h := c.hdr[:2]
		if _, err := io.ReadFull(c.br, h); err != nil {
			return 0, nil, false, err
		}
		fin, fop := h[0]&0x80 != 0, h[0]&0x0F
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, c.hdr[2:4]); err != nil {
				return 0, nil, false, err
			}
			n = uint64(binary.BigEndian.Uint16(c.hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(c.br, c.hdr[2:10]); err != nil {
				return 0, nil, false, err
			}
			n = binary.BigEndian.Uint64(c.hdr[2:10])
		}
		if h[1]&0x80 != 0 || n > 16<<20 {
			return 0, nil, false, errors.New("bad server frame")
		}
		start := len(c.buf)
		if uint64(cap(c.buf)-start) < n {
			c.buf = append(c.buf[:cap(c.buf)], make([]byte, int(n)-(cap(c.buf)-start))...)
		}
		c.buf = c.buf[:start+int(n)]
		if _, err := io.ReadFull(c.br, c.buf[start:]); err != nil {
			return 0, nil, false, err
		}
		if fop != 0 {
			op = fop
			compressed = h[0]&0x40 != 0
		}
		if fin {
			return op, c.buf, compressed, nil
		}
	}
}

// The child process: the test binary run again with these variables
// holds the client ends of many connections.
const (
	childAddrEnv  = "CHATD_COMPARE_CHILD_ADDR"
	childConnsEnv = "CHATD_COMPARE_CHILD_CONNS"
	childMsgEnv   = "CHATD_COMPARE_CHILD_MESSAGE"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(childAddrEnv); addr != "" {
		n, _ := strconv.Atoi(os.Getenv(childConnsEnv))
		if err := runChild(addr, n, []byte(os.Getenv(childMsgEnv)), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stdout, "error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild opens n connections to addr, says "ready", then answers each
// "wait N" line with "ok" once every connection received the broadcast
// message N times in all (each copy checked byte for byte). It ends when
// its standard input does (the parent is done or gone), closing every
// connection with a reset so that no TIME_WAIT is left to run the port
// range dry over many runs.
//
// Its sockets are plain blocking ones, outside the Go runtime's poller,
// read only when asked: while the server writes a broadcast, nothing in
// this process wakes up, so the time measured is the server's.
func runChild(addr string, n int, msg []byte, in io.Reader, out io.Writer) error {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portStr)
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return fmt.Errorf("not an IPv4 address: %s", addr)
	}
	sa := &syscall.SockaddrInet4{Port: port}
	copy(sa.Addr[:], ip)
	frame := serverFrame(msg)

	fds := make([]int, n)
	var (
		wg   sync.WaitGroup
		errc = make(chan error, 1)
		next atomic.Int64
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fd, err := rawHandshake(sa, addr)
				if err != nil {
					select {
					case errc <- fmt.Errorf("connection %d: %w", i, err):
					default:
					}
					return
				}
				fds[i] = fd
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, fd := range fds {
			if fd > 0 {
				syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
				syscall.Close(fd)
			}
		}
	}()
	select {
	case err := <-errc:
		return err
	default:
	}
	fmt.Fprintln(out, "ready")

	buf := make([]byte, len(frame))
	received := int64(0) // copies of the message per connection so far
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		total, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "wait "), 10, 64)
		if err != nil {
			return fmt.Errorf("bad command %q", sc.Text())
		}
		want := total / int64(n)
		for ; received < want; received++ {
			for i, fd := range fds {
				if err := readFull(fd, buf); err != nil {
					return fmt.Errorf("connection %d, message %d: %w", i, received+1, err)
				}
				if !bytes.Equal(buf, frame) {
					return fmt.Errorf("connection %d, message %d: got %q, want %q", i, received+1, buf, frame)
				}
			}
		}
		fmt.Fprintln(out, "ok")
	}
	return sc.Err()
}

// serverFrame is msg as one unmasked final text frame: the bytes every
// library sends for it.
func serverFrame(msg []byte) []byte {
	b := []byte{0x81, 0}
	switch n := len(msg); {
	case n < 126:
		b[1] = byte(n)
	case n <= 0xFFFF:
		b[1] = 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b[1] = 127
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, msg...)
}

// rawHandshake opens a blocking socket to sa and does the opening
// handshake on it.
func rawHandshake(sa *syscall.SockaddrInet4, host string) (int, error) {
	var fd int
	for attempt := 0; ; attempt++ {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		tv := syscall.Timeval{Sec: 60}
		syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
		syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
		err = syscall.Connect(fd, sa)
		if err == nil {
			break
		}
		syscall.Close(fd)
		// The Go runtime's preemption signal can interrupt a blocking
		// connect; the attempt is then half done: start afresh.
		if err != syscall.EINTR || attempt == 10 {
			return 0, fmt.Errorf("connect: %w", err)
		}
	}
	var kb [16]byte
	rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	for p := []byte(req); len(p) > 0; {
		n, err := syscall.Write(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			syscall.Close(fd)
			return 0, err
		}
		p = p[n:]
	}
	// Read the answer a byte at a time, so as not to read past it.
	var resp []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(resp, []byte("\r\n\r\n")) {
		if err := readFull(fd, one); err != nil || len(resp) > 4096 {
			syscall.Close(fd)
			return 0, fmt.Errorf("handshake answer: %v", err)
		}
		resp = append(resp, one[0])
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) || !bytes.Contains(resp, []byte(base64.StdEncoding.EncodeToString(sum[:]))) {
		syscall.Close(fd)
		return 0, fmt.Errorf("handshake answered %q", resp)
	}
	return fd, nil
}

func readFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Read(fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.EOF
		}
		p = p[n:]
	}
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
	cmd.Env = append(os.Environ(), childAddrEnv+"="+addr, childConnsEnv+"="+strconv.Itoa(n), childMsgEnv+"="+string(broadcastMessage))
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
