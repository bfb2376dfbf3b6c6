package redisbroker

import "strconv"

// keys names what Redis holds for one room. Every key and the channel
// carry the hash tag {room}, so that in a Redis Cluster they all live in
// the room's slot: the scripts touch several of them in one call, which a
// cluster allows only within one slot, and sharded pub/sub routes the
// channel to the same shard.
type keys struct {
	stream   string // the history, a stream of messages
	meta     string // hash: d = highest id dropped from the stream, l = last id added, f = first id (the floor)
	cidBase  string // + user/cid: "<id> <ts>" of the message published with a client message id, for the retention time
	presence string // sorted set: user → latest expiry of their entries
	entries  string // hash: user → {"n": name, "e": {node: expiry ms}}
	channel  string // pub/sub channel of messages and events
}

func roomKeys(prefix, room string) keys {
	tag := prefix + "{" + room + "}"
	return keys{
		stream:   tag + ":s",
		meta:     tag + ":m",
		cidBase:  tag + ":c:",
		presence: tag + ":p",
		entries:  tag + ":e",
		channel:  tag,
	}
}

// cidKey is the de-duplication key of (user, cid) in a room. The user's
// length comes first, so that no (user, cid) pair can spell another's key.
func (k keys) cidKey(user, cid string) string {
	return k.cidBase + strconv.Itoa(len(user)) + ":" + user + cid
}

// roomOfChannel returns the room of a room channel, or false.
func roomOfChannel(prefix, channel string) (string, bool) {
	n := len(prefix)
	if len(channel) < n+3 || channel[:n] != prefix || channel[n] != '{' || channel[len(channel)-1] != '}' {
		return "", false
	}
	return channel[n+1 : len(channel)-1], true
}

// probeChannel is a node's probe channel on one shard. A room name cannot
// contain '~', so no room's channel is ever a probe channel.
func probeChannel(prefix, node string, i int) string {
	return prefix + "{~probe:" + node + ":" + strconv.Itoa(i) + "}"
}

// slotOf is the Redis Cluster slot of a key: CRC16 (XMODEM) of its hash
// tag, or of the whole key when it has none, modulo 16384 (Redis Cluster
// specification, "Keys distribution model").
func slotOf(key string) int {
	if s := indexByte(key, '{'); s >= 0 {
		if e := indexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
