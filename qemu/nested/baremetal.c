// SPDX-License-Identifier: GPL-2.0
/*
 * The short inner guest of `make check` (tests/nested_test.c): a multiboot
 * payload with no operating system, so that it starts at once even under
 * nested TCG, where a Linux boot takes minutes. QEMU loads it with -kernel.
 *
 * It fills all guest RAM above 4 MiB with the checker's image (pattern.h),
 * then loops: each round rewrites two pages in PAT_STRIDE (pattern.h) and verifies
 * every page, and reports on the serial port:
 *   "rksm-guest: guest G filled N pages at PA"  once
 *   "rksm-guest: round R ok"                    per clean round
 *   "rksm-guest: FAIL page I word W ..."        on the first bad word, then halts
 * The command line (-append) gives "guest=G" (default 0).
 */
#include "pattern.h"

#define MAX_PAGES (1U << 18) /* 1 GiB */

struct multiboot_info {
	pat_u32 flags, mem_lower, mem_upper, boot_device, cmdline;
};

static unsigned char gen[MAX_PAGES];

__asm__(".section .multiboot, \"a\"\n"
	".align 4\n"
	".long 0x1badb002, 0x3, -(0x1badb002 + 0x3)\n"
	".text\n"
	".globl _start\n"
	"_start:\n"
	"	mov $stack_top, %esp\n"
	"	push %ebx\n"
	"	call main\n"
	"1:	hlt\n"
	"	jmp 1b\n"
	".bss\n"
	".align 16\n"
	"	.skip 16384\n"
	"stack_top:\n"
	".text\n");

static inline void outb(unsigned short port, unsigned char v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline unsigned char inb(unsigned short port)
{
	unsigned char v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void putc_serial(char c)
{
	while (!(inb(0x3fd) & 0x20))
		;
	outb(0x3f8, (unsigned char)c);
}

static void puts_serial(const char *s)
{
	while (*s)
		putc_serial(*s++);
}

static void putu(pat_u32 v, int base)
{
	char buf[12];
	int n = 0;

	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		putc_serial(buf[--n]);
}

static pat_u32 cmdline_guest(const char *s)
{
	pat_u32 g = 0;

	for (; s && *s; s++) {
		if (s[0] == 'g' && s[1] == 'u' && s[2] == 'e' && s[3] == 's' && s[4] == 't' && s[5] == '=') {
			for (s += 6; *s >= '0' && *s <= '9'; s++)
				g = g * 10 + (pat_u32)(*s - '0');
			break;
		}
	}
	return g;
}

void main(const struct multiboot_info *mbi);
void main(const struct multiboot_info *mbi)
{
	pat_u32 guest = (mbi->flags & 4) ? cmdline_guest((const char *)mbi->cmdline) : 0;
	pat_u32 end = (1U << 20) + ((mbi->flags & 1) ? mbi->mem_upper << 10 : 0);
	pat_u32 pages = end > PAT_BAREMETAL_START ? (end - PAT_BAREMETAL_START) >> 12 : 0;
	volatile pat_u32 *base = (volatile pat_u32 *)PAT_BAREMETAL_START;

	if (pages > MAX_PAGES)
		pages = MAX_PAGES;
	pat_fill_all(base, guest, pages);
	puts_serial("rksm-guest: guest ");
	putu(guest, 10);
	puts_serial(" filled ");
	putu(pages, 10);
	puts_serial(" pages at 0x");
	putu(PAT_BAREMETAL_START, 16);
	puts_serial("\n");
	for (pat_u32 round = 1;; round++) {
		int w, bad = pat_round(base, gen, guest, pages, round, &w);

		if (bad >= 0) {
			puts_serial("rksm-guest: FAIL page ");
			putu((pat_u32)bad, 10);
			puts_serial(" word ");
			putu((pat_u32)w, 10);
			puts_serial(" round ");
			putu(round, 10);
			puts_serial("\n");
			return;
		}
		puts_serial("rksm-guest: round ");
		putu(round, 10);
		puts_serial(" ok\n");
	}
}
