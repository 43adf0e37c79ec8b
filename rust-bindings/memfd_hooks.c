// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: the memfd hooks' kprobes. src/memfd.rs decides; this file places
 * the probes, reads the probed functions' arguments, the caller's syscall
 * registers and the file's seals, and applies the verdict to the registers.
 * Only what Rust cannot reach (struct kprobe, pt_regs, inode and seal access).
 * Declarations for Rust: shim.h and ffi.rs.
 *
 * Each probe sits at the first instruction of an out-of-line function. Its
 * pre-handler either lets the function run (returns 0, possibly with an
 * argument register changed) or makes it return an error at once: the return
 * value goes to ax, ip to the return address on top of the stack, and the
 * handler returns 1 so that kprobes resumes there instead of single-stepping
 * (Documentation/trace/kprobes.rst, "Changing Execution Path"; the kernel's
 * fail_function does the same). Two conditions keep that sound:
 *  - a dummy post-handler: jump-optimized kprobes ignore a changed ip, and
 *    kprobes never optimizes a probe that has a post-handler;
 *  - an int3 kprobe, not an ftrace-based one (ftrace's trampoline would not
 *    take the changed stack pointer): rksm_probe_place() refuses the latter.
 * The return address is popped here rather than by a "ret" stub in this
 * module (as fail_function's just_return_func is in the kernel), so no task
 * can be left about to run module text after the probes are gone.
 *
 * The memfd_create probe is always armed: memfd_create is rare, and its
 * counters count at the defaults too. The three run probes sit on hot paths
 * (every mmap and mprotect pays a breakpoint trap while they are armed), so
 * they are registered disabled and armed only while memfd_exec is not "any"
 * (rksm_memfd_hooks_arm(), from src/control.rs).
 */
#define pr_fmt(fmt) "rksm: " fmt

#include <linux/binfmts.h>
#include <linux/err.h>
#include <linux/fcntl.h>
#include <linux/fs.h>
#include <linux/hugetlb.h>
#include <linux/kprobes.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/personality.h>
#include <linux/ptrace.h>
#include <linux/ratelimit.h>
#include <linux/sched.h>
#include <linux/sched/task_stack.h>
#include <linux/shmem_fs.h>
#include <linux/string.h>
#include <uapi/linux/memfd.h>
#include <asm/syscall.h>
#include <asm/unistd.h>

#include "shim.h"

/* Implemented in Rust (src/memfd.rs); both safe in the probes' atomic context. */
long rksm_memfd_on_create(unsigned int user_flags, unsigned int flags);
int rksm_memfd_on_run(int what, bool write_sealed);

static const char *const rksm_memfd_what[] = {
	[RKSM_MEMFD_EXEC] = "exec of a memfd",
	[RKSM_MEMFD_MMAP] = "PROT_EXEC mmap of a memfd",
	[RKSM_MEMFD_MPROTECT] = "mprotect(PROT_EXEC) of a memfd",
	[RKSM_MEMFD_CREATE] = "memfd_create(MFD_EXEC)",
};

/* One rate limit per kind, so that a flood of one kind does not hide another. */
static struct ratelimit_state rksm_memfd_ratelimit[ARRAY_SIZE(rksm_memfd_what)] = {
	[0 ... ARRAY_SIZE(rksm_memfd_what) - 1] =
		RATELIMIT_STATE_INIT_FLAGS("rksm_memfd", DEFAULT_RATELIMIT_INTERVAL,
					   DEFAULT_RATELIMIT_BURST, 0),
};

/*
 * One rate-limited line per refusal (per kind, the printk default: 10 lines
 * in 5 s), in any context: ___ratelimit() only trylocks, and printk defers
 * the console from int3/NMI context.
 */
void rksm_memfd_log_refusal(int what, unsigned int policy)
{
	static const char *const words[] = { "any", "sealed", "none" };
	const char *knob = what == RKSM_MEMFD_CREATE ? "memfd_noexec" : "memfd_exec";
	char value[12];

	if (what < 0 || what >= ARRAY_SIZE(rksm_memfd_what) ||
	    !__ratelimit(&rksm_memfd_ratelimit[what]))
		return;
	if (what != RKSM_MEMFD_CREATE && policy < ARRAY_SIZE(words))
		strscpy(value, words[policy]);
	else
		snprintf(value, sizeof(value), "%u", policy);
	pr_warn("refused %s (%s=%s): pid %d comm %s\n", rksm_memfd_what[what], knob, value,
		task_pid_nr(current), current->comm);
}

#ifdef CONFIG_X86_64

/*
 * Make the probed function return @ret without running. Only valid at the
 * function's first instruction, where the return address is on top of the
 * stack. Returns 1, what the pre-handler must return after changing ip.
 */
static int rksm_skip_function(struct pt_regs *regs, unsigned long ret)
{
	unsigned long *sp = (unsigned long *)kernel_stack_pointer(regs);

	regs_set_return_value(regs, ret);
	instruction_pointer_set(regs, *sp);
	regs->sp += sizeof(unsigned long);
	return 1;
}

/* Required so that kprobes never jump-optimizes a probe that changes ip. */
static void rksm_no_post(struct kprobe *p, struct pt_regs *regs, unsigned long flags)
{
}

/*
 * Whether the current task is in the memfd_create syscall; if so, the flags
 * it passed (its syscall registers are untouched until it returns). Any ABI:
 * 64-bit, ia32 and x32 number the syscall differently.
 */
static bool rksm_memfd_create_flags(unsigned int *user_flags)
{
	struct pt_regs *uregs;
	unsigned long args[6];
	long nr, want = __NR_memfd_create;

	if (current->flags & PF_KTHREAD)
		return false;
	uregs = task_pt_regs(current);
	nr = syscall_get_nr(current, uregs);
#ifdef CONFIG_IA32_EMULATION
	if (in_ia32_syscall())
		want = __NR_ia32_memfd_create;
#endif
#ifdef CONFIG_X86_X32_ABI
	if (!in_ia32_syscall())
		nr &= ~(long)__X32_SYSCALL_BIT;
#endif
	if (nr != want)
		return false;
	syscall_get_arguments(current, uregs, args);
	*user_flags = args[1];
	return true;
}

/*
 * memfd_alloc_file(name, flags): memfd_create calls it with the flags its own
 * checks let through, after reserving an fd and before installing one. An
 * error return makes the syscall release the fd and fail. Other callers
 * (memfd_luo restoring a preserved memfd) are not memfd_create: let them be.
 */
static int rksm_memfd_alloc_pre(struct kprobe *p, struct pt_regs *regs)
{
	unsigned int flags = regs_get_kernel_argument(regs, 1);
	unsigned int user_flags;
	long ret;

	if (!rksm_memfd_create_flags(&user_flags))
		return 0;
	ret = rksm_memfd_on_create(user_flags, flags);
	if (ret < 0)
		return rksm_skip_function(regs, (unsigned long)ERR_PTR(ret));
	/* The second argument register (x86-64: rsi), read by the function once it runs. */
	regs->si = (unsigned int)ret;
	return 0;
}

/*
 * Whether @file is a memfd: a shmem (or hugetlbfs) file on the kernel's
 * internal mount (SB_KERNMOUNT; a user's tmpfs mount is never that) named
 * "memfd:..." by memfd_create. On success *@seals points to its seals.
 */
static bool rksm_file_is_memfd(struct file *file, unsigned int **seals)
{
	struct inode *inode;

	if (!file)
		return false;
	inode = file_inode(file);
	if (shmem_file(file))
		*seals = &SHMEM_I(inode)->seals;
#ifdef CONFIG_HUGETLBFS
	else if (is_file_hugepages(file))
		*seals = &HUGETLBFS_I(inode)->seals;
#endif
	else
		return false;
	if (!(inode->i_sb->s_flags & SB_KERNMOUNT))
		return false;
	/* The name is fixed at creation: internal files are never renamed. */
	return !strncmp(file->f_path.dentry->d_name.name, "memfd:", 6);
}

/*
 * Whether nobody can change the memfd's content any more. F_SEAL_WRITE waits
 * for every writable mapping and pin to go before it is set. F_SEAL_FUTURE_WRITE
 * only stops new writers, so it counts only once no shared mapping that may
 * write is left (i_mmap_writable counts those, mprotect-able ones included).
 */
static bool rksm_write_sealed(struct file *file, const unsigned int *seals)
{
	unsigned int s = READ_ONCE(*seals);

	if (s & F_SEAL_WRITE)
		return true;
	return (s & F_SEAL_FUTURE_WRITE) && !mapping_writably_mapped(file->f_mapping);
}

/* The common part of the three run hooks: @file is about to run (@what). */
static int rksm_memfd_run(struct pt_regs *regs, struct file *file, int what)
{
	unsigned int *seals;
	int err;

	if (!rksm_file_is_memfd(file, &seals))
		return 0;
	err = rksm_memfd_on_run(what, rksm_write_sealed(file, seals));
	if (err)
		return rksm_skip_function(regs, (unsigned long)(long)err);
	return 0;
}

/* security_bprm_check(bprm): each binary execve/execveat/fexecve tries, interpreters too. */
static int rksm_bprm_check_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct linux_binprm *bprm = (void *)regs_get_kernel_argument(regs, 0);

	return rksm_memfd_run(regs, bprm->file, RKSM_MEMFD_EXEC);
}

/*
 * security_mmap_file(file, prot, flags), for mmap and the ELF loader. prot is
 * what was asked: under READ_IMPLIES_EXEC, do_mmap() later adds PROT_EXEC to
 * PROT_READ unless the file is on a noexec mount (security.c's mmap_prot()
 * tells the LSMs so). memfds live on the kernel's internal shmem mount, which
 * is never noexec, so for them PROT_READ then means PROT_EXEC.
 */
static int rksm_mmap_file_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct file *file = (void *)regs_get_kernel_argument(regs, 0);
	unsigned long prot = regs_get_kernel_argument(regs, 1);

	if (!(prot & PROT_EXEC) &&
	    !((prot & PROT_READ) && (current->personality & READ_IMPLIES_EXEC)))
		return 0;
	return rksm_memfd_run(regs, file, RKSM_MEMFD_MMAP);
}

/* security_file_mprotect(vma, reqprot, prot): prot has READ_IMPLIES_EXEC applied. */
static int rksm_file_mprotect_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct vm_area_struct *vma = (void *)regs_get_kernel_argument(regs, 0);
	unsigned long prot = regs_get_kernel_argument(regs, 2);

	if (!(prot & PROT_EXEC))
		return 0;
	return rksm_memfd_run(regs, vma->vm_file, RKSM_MEMFD_MPROTECT);
}

static struct kprobe rksm_create_probe = {
	.symbol_name = "memfd_alloc_file",
	.pre_handler = rksm_memfd_alloc_pre,
	.post_handler = rksm_no_post,
};

/* Registered disabled: armed by rksm_memfd_hooks_arm(). */
static struct kprobe rksm_run_probes[] = {
	{
		.symbol_name = "security_bprm_check",
		.pre_handler = rksm_bprm_check_pre,
		.post_handler = rksm_no_post,
		.flags = KPROBE_FLAG_DISABLED,
	},
	{
		.symbol_name = "security_mmap_file",
		.pre_handler = rksm_mmap_file_pre,
		.post_handler = rksm_no_post,
		.flags = KPROBE_FLAG_DISABLED,
	},
	{
		.symbol_name = "security_file_mprotect",
		.pre_handler = rksm_file_mprotect_pre,
		.post_handler = rksm_no_post,
		.flags = KPROBE_FLAG_DISABLED,
	},
};

static bool rksm_create_placed;
static int rksm_run_placed; /* how many of rksm_run_probes are in place */
static bool rksm_run_armed;

/* Place @p, or log why it cannot be placed. */
static bool rksm_probe_place(struct kprobe *p, const char *knob)
{
	int err = register_kprobe(p);

	if (err) {
		pr_warn("cannot probe %s (error %d): %s stays at its default\n",
			p->symbol_name, err, knob);
		return false;
	}
	if (kprobe_ftrace(p)) {
		unregister_kprobe(p);
		pr_warn("%s is probed through ftrace here, where a probe cannot make it return: %s stays at its default\n",
			p->symbol_name, knob);
		return false;
	}
	return true;
}

unsigned int rksm_memfd_hooks_register(void)
{
	unsigned int placed = 0;
	int i;

	rksm_create_placed = rksm_probe_place(&rksm_create_probe, "memfd_noexec");
	if (rksm_create_placed)
		placed |= RKSM_MEMFD_HOOK_CREATE;

	/* memfd_exec needs all three: a policy with a hole in it would be a false promise. */
	for (i = 0; i < ARRAY_SIZE(rksm_run_probes); i++) {
		if (!rksm_probe_place(&rksm_run_probes[i], "memfd_exec"))
			break;
	}
	if (i == ARRAY_SIZE(rksm_run_probes)) {
		placed |= RKSM_MEMFD_HOOK_RUN;
	} else {
		while (i-- > 0)
			unregister_kprobe(&rksm_run_probes[i]);
		i = 0;
	}
	rksm_run_placed = i;
	return placed;
}

/*
 * Arm (@on) or disarm the run probes, all three. On an error, they are left
 * as they were. Nothing to do if they are not placed.
 */
int rksm_memfd_hooks_arm(bool on)
{
	int err = 0, i;

	if (!rksm_run_placed || on == rksm_run_armed)
		return 0;
	for (i = 0; i < rksm_run_placed; i++) {
		err = on ? enable_kprobe(&rksm_run_probes[i]) : disable_kprobe(&rksm_run_probes[i]);
		if (err)
			break;
	}
	if (err) {
		pr_warn("cannot %s the probe on %s (error %d)\n", on ? "arm" : "disarm",
			rksm_run_probes[i].symbol_name, err);
		while (i-- > 0) {
			if (on)
				disable_kprobe(&rksm_run_probes[i]);
			else
				enable_kprobe(&rksm_run_probes[i]);
		}
		return err;
	}
	rksm_run_armed = on;
	return 0;
}

/* unregister_kprobe() waits until no handler of the probe runs (synchronize_rcu). */
void rksm_memfd_hooks_unregister(void)
{
	struct kprobe *run[ARRAY_SIZE(rksm_run_probes)];
	int i;

	if (rksm_create_placed)
		unregister_kprobe(&rksm_create_probe);
	rksm_create_placed = false;
	for (i = 0; i < rksm_run_placed; i++)
		run[i] = &rksm_run_probes[i];
	if (rksm_run_placed)
		unregister_kprobes(run, rksm_run_placed);
	rksm_run_placed = 0;
	rksm_run_armed = false;
}

#else /* !CONFIG_X86_64 */

/* rksm_skip_function() knows the x86-64 calling convention only: no hooks elsewhere. */
unsigned int rksm_memfd_hooks_register(void)
{
	pr_warn("memfd hooks are x86-64 only: memfd_noexec and memfd_exec stay at their defaults\n");
	return 0;
}

void rksm_memfd_hooks_unregister(void)
{
}

int rksm_memfd_hooks_arm(bool on)
{
	return 0;
}

#endif /* CONFIG_X86_64 */
