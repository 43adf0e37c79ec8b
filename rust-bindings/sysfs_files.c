// SPDX-License-Identifier: GPL-2.0
/*
 * rksm C glue: /sys/kernel/mm/rksm: the kobject plumbing; show and store call into
 * src/sysfs.rs.
 * Only what Rust cannot reach (static inlines, macros, the PTE critical
 * section). Declarations for Rust: shim.h and ffi.rs.
 */
#include <linux/mm.h>
#include <linux/kobject.h>
#include <linux/slab.h>
#include <linux/sysfs.h>

#include "shim.h"

/* ---- sysfs: /sys/kernel/mm/rksm ------------------------------------------ */

/* Implemented in Rust (src/sysfs.rs). @ctx is what rksm_sysfs_add() was given. */
ssize_t rksm_attr_show(const void *ctx, unsigned int idx, char *buf);
ssize_t rksm_attr_store(const void *ctx, unsigned int idx, const char *buf, size_t len);

struct rksm_attr {
	struct kobj_attribute ka;
	unsigned int idx;
};

static struct kobject *rksm_kobj;
static struct rksm_attr *rksm_attrs;
static struct attribute **rksm_attr_list;
static struct attribute_group rksm_group;
static const void *rksm_sysfs_ctx;

static ssize_t shim_show(struct kobject *kobj, struct kobj_attribute *ka, char *buf)
{
	return rksm_attr_show(rksm_sysfs_ctx, container_of(ka, struct rksm_attr, ka)->idx, buf);
}

static ssize_t shim_store(struct kobject *kobj, struct kobj_attribute *ka,
			  const char *buf, size_t len)
{
	return rksm_attr_store(rksm_sysfs_ctx, container_of(ka, struct rksm_attr, ka)->idx,
			       buf, len);
}

static void rksm_sysfs_free(void)
{
	kfree(rksm_attr_list);
	kfree(rksm_attrs);
	rksm_attr_list = NULL;
	rksm_attrs = NULL;
}

/*
 * Create /sys/kernel/mm/rksm with @n files. @names[i] must live until
 * rksm_sysfs_remove(); file i is read-write for root if @writable[i], else
 * read-only. Show and store call back into Rust with @ctx and the index i.
 */
int rksm_sysfs_add(const char *const *names, const bool *writable, unsigned int n,
		   const void *ctx)
{
	unsigned int i;
	int err;

	rksm_sysfs_ctx = ctx;
	rksm_attrs = kcalloc(n, sizeof(*rksm_attrs), GFP_KERNEL);
	rksm_attr_list = kcalloc(n + 1, sizeof(*rksm_attr_list), GFP_KERNEL);
	if (!rksm_attrs || !rksm_attr_list) {
		rksm_sysfs_free();
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		struct rksm_attr *a = &rksm_attrs[i];

		sysfs_attr_init(&a->ka.attr);
		a->ka.attr.name = names[i];
		a->ka.attr.mode = writable[i] ? 0644 : 0444;
		a->ka.show = shim_show;
		a->ka.store = writable[i] ? shim_store : NULL;
		a->idx = i;
		rksm_attr_list[i] = &a->ka.attr;
	}
	rksm_group.name = "rksm";
	rksm_group.attrs = rksm_attr_list;

	/* A named group on mm_kobj is the directory /sys/kernel/mm/rksm. */
	rksm_kobj = mm_kobj;
	err = sysfs_create_group(rksm_kobj, &rksm_group);
	if (err)
		rksm_sysfs_free();
	return err;
}

/* Remove the directory; waits for running show/store calls to finish. */
void rksm_sysfs_remove(void)
{
	sysfs_remove_group(rksm_kobj, &rksm_group);
	rksm_sysfs_free();
}
