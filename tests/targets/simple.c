/* A small target with one optional extra: "socket" (a socketpair),
 * "eventfd", "stop" (stops itself once ready) or nothing. */
#include "harness.h"

#include <sys/eventfd.h>
#include <sys/socket.h>

static unsigned long counter;

int main(int argc, char **argv)
{
	int sv[2] = { -1, -1 };
	harness_init();
	if (argc > 1 && !strcmp(argv[1], "socket"))
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	if (argc > 1 && !strcmp(argv[1], "eventfd"))
		sv[0] = eventfd(3, 0);
	counter = 12345;
	ready("extra=%s fd=%d", argc > 1 ? argv[1] : "none", sv[0]);
	wait_for_check();
	expect(counter == 12345, "counter changed");
	return report();
}
