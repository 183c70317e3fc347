// SPDX-License-Identifier: GPL-2.0
// The BPF program the system tests load and run in the guest
// (tests/system/splat.rs): an XDP program whose verdict depends on its input,
// so that a test of it can fail. XDP_PASS (2) when the packet's first byte is
// 0x42, XDP_DROP (1) otherwise, XDP_ABORTED (0) for an empty packet.
// Self-contained (no libbpf headers): clang -target bpf -O2 -c.

struct xdp_md {
	unsigned int data;
	unsigned int data_end;
	unsigned int data_meta;
	unsigned int ingress_ifindex;
	unsigned int rx_queue_index;
	unsigned int egress_ifindex;
};

__attribute__((section("xdp"), used)) int first_byte(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(unsigned long)ctx->data;
	unsigned char *end = (unsigned char *)(unsigned long)ctx->data_end;

	if (data + 1 > end)
		return 0;
	return data[0] == 0x42 ? 2 : 1;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
