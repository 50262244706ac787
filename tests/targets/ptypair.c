/* A pty pair held whole by the tree, as a terminal emulator and its shell:
 *   master  /dev/ptmx in packet mode (TIOCPKT)
 *   slave   its pts, opened O_NOCTTY, exclusive (TIOCEXCL), termios changed
 *           (no echo, no output processing, VINTR ^K, VMIN 3), window
 *           33x111 with pixel sizes, "to-master\n" written (queued for the
 *           master) and "to-slave\n" queued for it by the master
 *   locked  a second /dev/ptmx never unlocked (TIOCGPTLCK 1)
 *   session a child in a session of its own whose controlling terminal is
 *           the pts (opened /dev/tty after TIOCSCTTY), with a grandchild in
 *           a group of its own made the terminal's foreground group
 * After the check signal: the same pts number, every setting, the data
 * queued both ways (the master's with its packet status byte), the lock,
 * and the child's session (it checks tcgetsid and tcgetpgrp through the pts and /dev/tty itself
 * and exits 0 when all holds). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

static volatile sig_atomic_t child_check;
static void on_usr1(int sig) { (void)sig; child_check = 1; }

static int session_child(const char *pts, int ready_w)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGTTOU, SIG_IGN);
	setsid();
	int s = open(pts, O_RDWR | O_NOCTTY);
	if (s < 0 || ioctl(s, TIOCSCTTY, 0) < 0)
		_exit(10);
	int tty = open("/dev/tty", O_RDWR);
	if (tty < 0)
		_exit(11);
	pid_t g = fork();
	if (g == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	setpgid(g, g);
	if (tcsetpgrp(tty, g) < 0)
		_exit(12);
	write(ready_w, "x", 1);
	while (!child_check)
		pause();
	int bad = 0;
	bad |= tcgetsid(s) != getpid(); /* the pts answers so only to its own session */
	bad |= (tcgetsid(tty) != getpid()) << 1;
	bad |= (tcgetpgrp(tty) != g) << 2;
	kill(g, SIGKILL);
	waitpid(g, NULL, 0);
	_exit(bad ? 20 + bad : 0);
}

int main(void)
{
	harness_init();
	int m = open("/dev/ptmx", O_RDWR | O_NOCTTY);
	grantpt(m);
	unlockpt(m);
	char pts[64];
	snprintf(pts, sizeof(pts), "%s", ptsname(m));
	int s = open(pts, O_RDWR | O_NOCTTY);
	struct termios t;
	tcgetattr(s, &t);
	t.c_lflag &= ~(ECHO | ECHOE | ECHOK);
	t.c_oflag &= ~OPOST;
	t.c_cc[VINTR] = 11;
	t.c_cc[VMIN] = 3;
	tcsetattr(s, TCSANOW, &t);
	struct winsize w = { .ws_row = 33, .ws_col = 111, .ws_xpixel = 640, .ws_ypixel = 480 };
	ioctl(s, TIOCSWINSZ, &w);
	ioctl(s, TIOCEXCL);
	int one = 1;
	ioctl(m, TIOCPKT, &one);
	int locked = open("/dev/ptmx", O_RDWR | O_NOCTTY);

	int ready_p[2];
	pipe(ready_p);
	pid_t child = fork();
	if (child == 0)
		session_child(pts, ready_p[1]);
	char x;
	read(ready_p[0], &x, 1);
	close(ready_p[0]);
	close(ready_p[1]);
	write(s, "to-master\n", 10);
	write(m, "to-slave\n", 9);
	usleep(100000);
	ready("child=%d pts=%s", child, pts);
	while (!check_requested)
		pause();

	expect(strcmp(ptsname(m), pts) == 0, "the same pts number");
	struct termios r;
	expect(tcgetattr(s, &r) == 0, "tcgetattr");
	expect(!(r.c_lflag & ECHO) && !(r.c_oflag & OPOST), "termios flags");
	expect(r.c_cc[VINTR] == 11 && r.c_cc[VMIN] == 3, "termios c_cc");
	struct winsize rw;
	expect(ioctl(s, TIOCGWINSZ, &rw) == 0 && rw.ws_row == 33 && rw.ws_col == 111 &&
	       rw.ws_xpixel == 640 && rw.ws_ypixel == 480, "window size");
	int v = 0;
	expect(ioctl(m, TIOCGPKT, &v) == 0 && v == 1, "packet mode");
	v = 0;
	expect(ioctl(s, TIOCGEXCL, &v) == 0 && v == 1, "exclusive");
	v = 0;
	expect(ioctl(locked, TIOCGPTLCK, &v) == 0 && v == 1, "the second pty still locked");
	v = 0;
	expect(ioctl(m, TIOCGPTLCK, &v) == 0 && v == 0, "the first pty unlocked");
	pid_t sid = 0;
	expect(ioctl(m, TIOCGSID, &sid) == 0 && sid == child, "the pts is the child's ctty");

	char buf[64] = { 0 };
	struct pollfd p = { .fd = m, .events = POLLIN };
	expect(poll(&p, 1, 2000) == 1, "master readable");
	ssize_t n = read(m, buf, sizeof(buf));
	expect(n == 11 && buf[0] == 0 && !memcmp(buf + 1, "to-master\n", 10), "data for the master");
	p.fd = s;
	memset(buf, 0, sizeof(buf));
	expect(poll(&p, 1, 2000) == 1, "slave readable");
	n = read(s, buf, sizeof(buf));
	expect(n == 9 && !memcmp(buf, "to-slave\n", 9), "data for the slave");

	kill(child, SIGUSR1);
	int status = 0;
	expect(waitpid(child, &status, 0) == child, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		printf("FAIL the child's session (status %#x)\n", status);
		failures++;
	}
	return report();
}
