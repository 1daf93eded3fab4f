// go-iproto-probe: the go-iproto side of the interop checks that the stock Go peers (echo
// server, load generator, vector printer) cannot make, built by tests/support/go.rs against the
// same go-iproto copy as them.
//
//	go-iproto-probe ping-client -addr A -interval D -pings N
//	    dials A with PingInterval D, waits until N packets arrived (ping acks, and the
//	    server's own pings if it sends any; bounded by N*D+5s), makes one call, prints
//	    {"received","closed","error","call_ok"} and shuts down (0xff01). go-iproto drops a
//	    channel whose ping is not acked within two intervals, so "closed":false after N
//	    packets means the peer answers pings.
//	go-iproto-probe ping-server -interval D
//	    echo server whose channels ping every D; prints "listening on HOST:PORT".
//	go-iproto-probe unpack
//	    reads "NAME<TAB>HEX" lines (names as go-pack-vectors and go-pack-bench print them),
//	    unpacks each with go-iproto into the Go value of that name and prints
//	    {"name","ok","error"}: ok when the unpacked value equals the expected one and no byte
//	    is left over.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/Educentr/go-iproto/iproto"
)

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}
func (quiet) Debugf(context.Context, string, ...any) {}

func main() {
	if len(os.Args) < 2 {
		fail("usage: go-iproto-probe ping-client|ping-server|unpack [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address")
	interval := fs.Duration("interval", 50*time.Millisecond, "PingInterval")
	pings := fs.Int("pings", 5, "ping acks to wait for")
	_ = fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "ping-client":
		pingClient(*addr, *interval, *pings)
	case "ping-server":
		pingServer(*addr, *interval)
	case "unpack":
		unpackLines()
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "go-iproto-probe:", msg)
	os.Exit(1)
}

func pingClient(addr string, interval time.Duration, pings int) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fail(err.Error())
	}
	ch, err := iproto.RunChannel(conn, &iproto.ChannelConfig{PingInterval: interval, Logger: quiet{}})
	if err != nil {
		fail(err.Error())
	}
	deadline := time.Now().Add(time.Duration(pings)*interval + 5*time.Second)
	for int(ch.Stats().PacketsReceived) < pings && !ch.Closed() && time.Now().Before(deadline) {
		time.Sleep(interval / 4)
	}
	out := map[string]any{"received": ch.Stats().PacketsReceived, "closed": ch.Closed(), "error": ""}
	if e := ch.Error(); e != nil {
		out["error"] = e.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := ch.Call(ctx, 7, []byte("after the pings"))
	out["call_ok"] = err == nil && string(resp) == "after the pings"
	ch.Shutdown()
	<-ch.Done()
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func pingServer(addr string, interval time.Duration) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fail(err.Error())
	}
	echo := iproto.HandlerFunc(func(ctx context.Context, c iproto.Conn, p iproto.Packet) {
		_ = c.Send(ctx, iproto.ResponseTo(p, p.Data))
	})
	srv := &iproto.Server{
		ChannelConfig: &iproto.ChannelConfig{Handler: echo, PingInterval: interval, Logger: quiet{}},
		Log:           quiet{},
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := srv.Serve(context.Background(), ln); err != nil {
		fail(err.Error())
	}
}

// The types go-pack-vectors and go-pack-bench pack.
type tagged struct {
	Count uint32 `iproto:"ber"`
	Name  string
}

type nested struct {
	ID    uint64
	Inner tagged
	List  []uint16
}

type address struct {
	Zip  uint32 `iproto:"ber"`
	City string
}

type order struct {
	ID      uint64
	User    uint32 `iproto:"ber"`
	Qty     uint16 `iproto:"ber"`
	Name    string
	Items   []uint32
	Address address
}

// vectors: name -> the values packed under that name; the unpack mode is the name's prefix.
func vectors() map[string][]any {
	items := make([]uint32, 16)
	for i := range items {
		items[i] = uint32(i * 1000)
	}
	v := map[string]any{
		"Pack uint8(0xab)":                uint8(0xab),
		"Pack uint16(1024)":               uint16(1024),
		"Pack uint32(258)":                uint32(258),
		"Pack int32(-1)":                  int32(-1),
		"Pack uint64(0x0102030405060708)": uint64(0x0102030405060708),
		`Pack string("hello")`:            "hello",
		`Pack string("")`:                 "",
		"Pack []byte{1,2,3}":              []byte{1, 2, 3},
		"Pack []uint32{1,2}":              []uint32{1, 2},
		`Pack struct{Count uint32 "ber"; Name string}{258,"world"}`:             tagged{258, "world"},
		`Pack struct{ID uint64; Inner{300,"x"}; List []uint16{1,65535}}{1,...}`: nested{1, tagged{300, "x"}, []uint16{1, 65535}},
		"PackBER uint64(max)":     uint64(math.MaxUint64),
		"PackBER uint16(300)":     uint16(300),
		"PackBER uint8(200)":      uint8(200),
		`PackBER string("hello")`: "hello",
		"PackBER []uint32{1,300}": []uint32{1, 300},
		"Pack Order":              order{0x0102030405060708, 1000000, 300, "a fairly ordinary product name", items, address{125167, "Moscow"}},
	}
	for _, n := range []uint32{0, 5, 127, 128, 255, 16383, 16384, 100000, math.MaxUint32} {
		v[fmt.Sprintf("PackBER uint32(%d)", n)] = n
	}
	out := map[string][]any{`Pack uint32(7),string("ab")`: {uint32(7), "ab"}}
	for name, x := range v {
		out[name] = []any{x}
	}
	return out
}

func unpackLines() {
	known := vectors()
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, hx, _ := strings.Cut(sc.Text(), "\t")
		res := map[string]any{"name": name, "ok": false, "error": ""}
		if err := check(known, name, hx); err != nil {
			res["error"] = err.Error()
		} else {
			res["ok"] = true
		}
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
}

func check(known map[string][]any, name, hx string) error {
	want, ok := known[name]
	if !ok {
		return errors.New("no Go value of this name")
	}
	data, err := hex.DecodeString(hx)
	if err != nil {
		return err
	}
	ptrs := make([]any, len(want))
	for i, w := range want {
		ptrs[i] = reflect.New(reflect.TypeOf(w)).Interface()
	}
	unpack := iproto.Unpack
	if strings.HasPrefix(name, "PackBER ") {
		unpack = iproto.UnpackBER
	}
	rest, err := unpack(data, ptrs...)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d bytes left over", len(rest))
	}
	for i, w := range want {
		if got := reflect.ValueOf(ptrs[i]).Elem().Interface(); !reflect.DeepEqual(got, w) {
			return fmt.Errorf("unpacked %#v, want %#v", got, w)
		}
	}
	return nil
}
