// SPDX-License-Identifier: GPL-2.0
/*
 * Runs one case of the kernel's own memfd test,
 * tools/testing/selftests/memfd/memfd_test.c, against rksm's memfd_noexec
 * knob: ./memfd_noexec_kernel CASE. scripts/build-memfd-selftests.sh copies
 * memfd_test.c out of the kernel tree, points its sysctl helpers at
 * /sys/kernel/mm/rksm/memfd_noexec in the copy, and builds it with this file.
 * tests/memfd_selftests.sh says which cases apply and why the others do not.
 *
 * Exit 0: the case passed. On a failure the case prints why and aborts, as in
 * the kernel's own run; a case that fails in a child pid namespace makes the
 * parent abort too.
 */
#define main memfd_test_main
#include "memfd_test.c"
#undef main

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{ "exec_seal", test_exec_seal },
	{ "exec_no_seal", test_exec_no_seal },
	{ "noexec_seal", test_noexec_seal },
	{ "sysctl_0", test_sysctl_set_sysctl0 },
	{ "sysctl_1", test_sysctl_set_sysctl1 },
	{ "sysctl_2", test_sysctl_set_sysctl2 },
	{ "sysctl_simple", test_sysctl_simple },
	{ "sysctl_1_failset", test_sysctl_sysctl1_failset },
	{ "sysctl_2_failset", test_sysctl_sysctl2_failset },
	{ "sysctl_nested", test_sysctl_nested },
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (!strcmp(argv[1], cases[i].name)) {
			cases[i].fn();
			return 0;
		}
	}
	fprintf(stderr, "%s: no case %s\n", argv[0], argv[1]);
	return 2;
}
