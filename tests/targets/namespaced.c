/* A process tree in UTS and IPC namespaces of its own, as in a container:
 * a host and domain name, a SysV shared memory segment (data, a hole, an
 * owner), a private one, a semaphore set with values and a message queue
 * with two messages queued; the segment stays attached, read-write.
 * A child shares the namespaces ("nested" as
 * argv[1]: the child unshares a UTS namespace of its own). After the check
 * signal everything must be as it was, with the same ids. */
#include "harness.h"

#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PAGE 4096
#define SHM_KEY 0x48494201
#define SEM_KEY 0x48494202
#define MSG_KEY 0x48494203

struct message {
	long mtype;
	char text[32];
};

static int child_is_home(void)
{
	char name[64];
	gethostname(name, sizeof(name));
	return !strcmp(name, "hiber-box");
}

int main(int argc, char **argv)
{
	int nested = argc > 1 && !strcmp(argv[1], "nested");
	int to_child[2], from_child[2];
	harness_init();
	if (unshare(CLONE_NEWUTS | CLONE_NEWIPC)) {
		printf("unshare: %m\n");
		return 2;
	}
	sethostname("hiber-box", 9);
	setdomainname("box.test", 8);

	int shm = shmget(SHM_KEY, 3 * PAGE, IPC_CREAT | 0640);
	char *area = shmat(shm, NULL, 0);
	memset(area, 'a', PAGE);
	memset(area + 2 * PAGE, 'c', 100);
	shmdt(area);
	struct shmid_ds ds;
	shmctl(shm, IPC_STAT, &ds);
	ds.shm_perm.uid = 1000;
	shmctl(shm, IPC_SET, &ds);
	char *live = shmat(shm, NULL, 0);
	int private_shm = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
	area = shmat(private_shm, NULL, 0);
	strcpy(area, "private");
	shmdt(area);

	int sem = semget(SEM_KEY, 3, IPC_CREAT | 0600);
	unsigned short values[3] = { 1, 2, 300 };
	semctl(sem, 0, SETALL, values);

	int msq = msgget(MSG_KEY, IPC_CREAT | 0600);
	struct message m1 = { 5, "first" }, m2 = { 7, "second message" };
	msgsnd(msq, &m1, 6, 0);
	msgsnd(msq, &m2, 15, 0);

	pipe(to_child);
	pipe(from_child);
	pid_t child = fork();
	if (child == 0) {
		char go, verdict;
		if (nested)
			unshare(CLONE_NEWUTS);
		read(to_child[0], &go, 1);
		verdict = child_is_home() ? 'y' : 'n';
		write(from_child[1], &verdict, 1);
		_exit(0);
	}
	ready("child=%d shm=%d private_shm=%d sem=%d msq=%d", child, shm, private_shm, sem, msq);
	wait_for_check();

	char name[64] = "";
	gethostname(name, sizeof(name));
	expect(!strcmp(name, "hiber-box"), "hostname %s", name);
	getdomainname(name, sizeof(name));
	expect(!strcmp(name, "box.test"), "domain name %s", name);

	expect(shmget(SHM_KEY, 0, 0) == shm, "the segment's id");
	shmctl(shm, IPC_STAT, &ds);
	expect(ds.shm_perm.uid == 1000 && (ds.shm_perm.mode & 0777) == 0640 &&
	       ds.shm_segsz == 3 * PAGE, "the segment's owner, mode and size");
	area = shmat(shm, NULL, SHM_RDONLY);
	int data_ok = 1;
	for (int i = 0; i < 3 * PAGE; i++)
		if (area[i] != (i < PAGE ? 'a' : i >= 2 * PAGE && i < 2 * PAGE + 100 ? 'c' : 0))
			data_ok = 0;
	expect(data_ok, "the segment's data");
	expect(live[0] == 'a' && live[2 * PAGE] == 'c', "the attached segment's data");
	live[PAGE] = 'z';  /* written through the attachment that came back */
	expect(area[PAGE] == 'z', "the attachment is the segment itself");
	shmctl(shm, IPC_STAT, &ds);
	expect(ds.shm_nattch == 3, "attachments (ours, the child's, area): %lu", (unsigned long)ds.shm_nattch);
	shmdt(area);
	area = shmat(private_shm, NULL, SHM_RDONLY);
	expect(area != (void *)-1 && !strcmp(area, "private"), "the private segment");

	expect(semget(SEM_KEY, 0, 0) == sem, "the semaphore set's id");
	unsigned short now[3] = { 0 };
	semctl(sem, 0, GETALL, now);
	expect(now[0] == 1 && now[1] == 2 && now[2] == 300, "semaphore values %d %d %d",
	       now[0], now[1], now[2]);

	expect(msgget(MSG_KEY, 0) == msq, "the queue's id");
	struct message got = { 0 };
	expect(msgrcv(msq, &got, sizeof(got.text), 0, IPC_NOWAIT) == 6 && got.mtype == 5 &&
	       !strcmp(got.text, "first"), "first message");
	expect(msgrcv(msq, &got, sizeof(got.text), 0, IPC_NOWAIT) == 15 && got.mtype == 7 &&
	       !strcmp(got.text, "second message"), "second message");

	char verdict = 0;
	write(to_child[1], "g", 1);
	read(from_child[0], &verdict, 1);
	expect(verdict == 'y', "the child's host name");
	waitpid(child, NULL, 0);
	return report();
}
