/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The host tests' harness: CHECK()s mark the running test failed, SKIP by
 * setting tap_skipped, and tap_main() prints TAP.  A hang is a failure:
 * an alarm ends the program and the plan goes unmet.
 */
#ifndef WTRACK_TESTS_TAP_H
#define WTRACK_TESTS_TAP_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int tap_failed;
static const char *tap_skipped;

#define CHECK(cond) do {						\
	if (!(cond)) {							\
		printf("# %s:%d: %s\n", __FILE__, __LINE__, #cond);	\
		tap_failed = 1;						\
	}								\
} while (0)

#define CHECK_EQ(a, b) do {						\
	long long _a = (long long)(a), _b = (long long)(b);		\
	if (_a != _b) {							\
		printf("# %s:%d: %s == %lld, expected %s == %lld\n",	\
		       __FILE__, __LINE__, #a, _a, #b, _b);		\
		tap_failed = 1;						\
	}								\
} while (0)

struct tap_test {
	const char *name;
	void (*fn)(void);
};

/* Runs every test, or only the one named by argv[1]; 1 if any failed. */
static inline int tap_main(const struct tap_test *tests, unsigned int n,
			   int argc, char **argv)
{
	unsigned int bad = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	alarm(120);
	printf("1..%u\n", n);
	for (unsigned int i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name))
			continue;
		tap_failed = 0;
		tap_skipped = NULL;
		tests[i].fn();
		printf("%sok %u - %s%s%s\n", tap_failed ? "not " : "", i + 1,
		       tests[i].name, tap_skipped ? " # SKIP " : "",
		       tap_skipped ? tap_skipped : "");
		bad += tap_failed;
	}
	return bad ? 1 : 0;
}

#endif /* WTRACK_TESTS_TAP_H */
