/* The overhead run's sampling floor: the least a sensor that sees every request and every
 * response in user space must do. XDP on ingress and TC on egress each put one fixed 128-byte
 * record (time, addresses, ports, payload length, the first 64 payload bytes) into a ring for
 * every TCP segment with payload to or from port PORT, submitted without a wakeup; the
 * `overhead_sampler` binary drains both rings on a timer. No per-source state, no blocks, no
 * parsing past TCP. Built by clang with -DPORT=<the server's port>; no headers needed. */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_RB_NO_WAKEUP 1
#define XDP_PASS 2
#define TC_ACT_OK 0
#define RING_BYTES (16 << 20)
#define DATA_BYTES 64

struct xdp_md {
	__u32 data;
	__u32 data_end;
};

/* The fields of `struct __sk_buff` up to `data_end` (include/uapi/linux/bpf.h). */
struct __sk_buff {
	__u32 len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto;
	__u32 priority, ingress_ifindex, ifindex, tc_index, cb[5], hash, tc_classid;
	__u32 data, data_end;
};

struct record {
	__u64 ts_ns;
	__u8 src[16];
	__u8 dst[16];
	__u16 sport, dport;
	__u32 payload_len;
	__u8 data[DATA_BYTES];
	__u8 pad[16];
};
_Static_assert(sizeof(struct record) == 128, "fixed 128-byte records");

struct {
	int (*type)[BPF_MAP_TYPE_RINGBUF];
	int (*max_entries)[RING_BYTES];
} req_ring SEC(".maps");

struct {
	int (*type)[BPF_MAP_TYPE_RINGBUF];
	int (*max_entries)[RING_BYTES];
} resp_ring SEC(".maps");

static __u64 (*bpf_ktime_get_boot_ns)(void) = (void *)125;
static void *(*bpf_ringbuf_reserve)(void *ring, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 off, void *to, __u32 len) = (void *)26;
static long (*bpf_xdp_load_bytes)(void *xdp, __u32 off, void *buf, __u32 len) = (void *)189;

/* Where a TCP segment's fields are: offsets into the frame, 0 in `payload_off` if the frame
 * is not a TCP segment with payload (IPv4 without fragments, IPv6 without extension headers). */
struct segment {
	__u32 payload_off, payload_len;
	__u16 sport, dport;
	__u8 v6;
};

static __attribute__((always_inline)) struct segment parse(void *data, void *end)
{
	struct segment s = {};
	__u8 *eth = data;
	if ((void *)(eth + 14) > end)
		return s;
	__u16 proto = (eth[12] << 8) | eth[13];
	__u8 *ip = eth + 14;
	__u8 *tcp;
	__u32 ip_total;
	if (proto == 0x0800) {
		if ((void *)(ip + 20) > end || ip[9] != 6 || ((ip[6] & 0x3f) | ip[7]))
			return s;
		__u32 ihl = (ip[0] & 0x0f) * 4;
		if (ihl < 20)
			return s;
		tcp = ip + ihl;
		ip_total = (ip[2] << 8) | ip[3];
		if (ip_total < ihl)
			return s;
		ip_total -= ihl;
	} else if (proto == 0x86dd) {
		if ((void *)(ip + 40) > end || ip[6] != 6)
			return s;
		tcp = ip + 40;
		ip_total = (ip[4] << 8) | ip[5];
		s.v6 = 1;
	} else {
		return s;
	}
	if ((void *)(tcp + 20) > end)
		return s;
	__u32 doff = (tcp[12] >> 4) * 4;
	if (doff < 20 || ip_total <= doff)
		return s;
	s.sport = (tcp[0] << 8) | tcp[1];
	s.dport = (tcp[2] << 8) | tcp[3];
	s.payload_off = (__u32)(tcp - eth) + doff;
	s.payload_len = ip_total - doff;
	return s;
}

/* Copies the segment's addresses into `r`, checking their bytes against `end` again: the
 * verifier tracks the packet's range per constant bound, not through `parse`'s result. */
static __attribute__((always_inline)) void addresses(struct record *r, __u8 *data, void *end,
						     __u8 v6)
{
	if (v6) {
		if ((void *)(data + 54) > end)
			return;
		__builtin_memcpy(r->src, data + 22, 16);
		__builtin_memcpy(r->dst, data + 38, 16);
	} else {
		__builtin_memset(r->src, 0, 32);
		if ((void *)(data + 34) > end)
			return;
		__builtin_memcpy(r->src, data + 26, 4);
		__builtin_memcpy(r->dst, data + 30, 4);
	}
}

/* The number of payload bytes a record copies, in [1, DATA_BYTES] in a form the verifier
 * tracks (hidden from the optimiser, then masked: DATA_BYTES is a power of two). */
static __attribute__((always_inline)) __u32 copy_len(__u32 payload_len)
{
	__u32 n = payload_len < DATA_BYTES ? payload_len : DATA_BYTES;
	asm volatile("" : "+r"(n));
	return ((n - 1) & (DATA_BYTES - 1)) + 1;
}

/* Fills a reserved record but for its payload bytes. */
static __attribute__((always_inline)) void fill(struct record *r, __u8 *data, void *end,
						struct segment s)
{
	r->ts_ns = bpf_ktime_get_boot_ns();
	addresses(r, data, end, s.v6);
	r->sport = s.sport;
	r->dport = s.dport;
	r->payload_len = s.payload_len;
}

SEC("xdp") int sampler_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct segment s = parse(data, end);
	if (!s.payload_off || s.dport != PORT)
		return XDP_PASS;
	struct record *r = bpf_ringbuf_reserve(&req_ring, sizeof(*r), 0);
	if (!r)
		return XDP_PASS;
	fill(r, data, end, s);
	bpf_xdp_load_bytes(ctx, s.payload_off, r->data, copy_len(s.payload_len));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	return XDP_PASS;
}

SEC("classifier") int sampler_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct segment s = parse(data, end);
	if (!s.payload_off || s.sport != PORT)
		return TC_ACT_OK;
	struct record *r = bpf_ringbuf_reserve(&resp_ring, sizeof(*r), 0);
	if (!r)
		return TC_ACT_OK;
	fill(r, data, end, s);
	bpf_skb_load_bytes(skb, s.payload_off, r->data, copy_len(s.payload_len));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
