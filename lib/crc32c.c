// SPDX-License-Identifier: MIT
/*
 * CRC32C for the snapshot file: the SSE4.2 crc32 instruction where the
 * CPU has it (every x86-64 CPU since 2008), slicing-by-8 tables otherwise.
 */
#include <pthread.h>
#include <string.h>
#include "snapfmt.h"

#define CRC32C_POLY	0x82f63b78U	/* reflected Castagnoli */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (unsigned int i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (c & 1 ? CRC32C_POLY : 0);
		table[0][i] = c;
	}
	/* table[k][i]: byte i followed by k zero bytes. */
	for (unsigned int i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			table[k][i] = (table[k - 1][i] >> 8) ^
				      table[0][table[k - 1][i] & 0xff];
}

uint32_t wtsnap_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&table_once, table_init);
	crc = ~crc;
	for (; len && ((uintptr_t)p & 7); len--)
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		v ^= crc;	/* little-endian: byte 0 meets the low byte */
		crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^
		      table[5][(v >> 16) & 0xff] ^ table[4][(v >> 24) & 0xff] ^
		      table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff] ^
		      table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
	}
	for (; len; len--)
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
#include <cpuid.h>

__attribute__((target("sse4.2")))
uint32_t wtsnap_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t c = ~crc;

	for (; len && ((uintptr_t)p & 7); len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	for (; len >= 8; len -= 8, p += 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
	}
	for (; len; len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return ~(uint32_t)c;
}

bool wtsnap_crc32c_hw_ok(void)
{
	/* -1: not asked yet.  CPUID may exit to a hypervisor: ask once. */
	static int ok = -1;
	int v = __atomic_load_n(&ok, __ATOMIC_RELAXED);
	unsigned int a, b, c, d;

	if (v < 0) {
		v = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
		__atomic_store_n(&ok, v, __ATOMIC_RELAXED);
	}
	return v;
}
#else
uint32_t wtsnap_crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return wtsnap_crc32c_sw(crc, buf, len);
}

bool wtsnap_crc32c_hw_ok(void)
{
	return false;
}
#endif

uint32_t wtsnap_crc32c(uint32_t crc, const void *buf, size_t len)
{
	if (wtsnap_crc32c_hw_ok())
		return wtsnap_crc32c_hw(crc, buf, len);
	return wtsnap_crc32c_sw(crc, buf, len);
}

uint32_t wtsnap_header_crc(const void *hdr, uint32_t header_size)
{
	static const uint8_t zero[4];
	const uint8_t *h = hdr;
	uint32_t crc;

	crc = wtsnap_crc32c(0, h, WTSNAP_HDR_CRC_OFF);
	crc = wtsnap_crc32c(crc, zero, sizeof(zero));
	return wtsnap_crc32c(crc, h + WTSNAP_HDR_CRC_OFF + 4,
			     header_size - WTSNAP_HDR_CRC_OFF - 4);
}
