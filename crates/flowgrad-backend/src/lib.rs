//! The one place the binaries choose their burn backend: every crate that computes (engine,
//! training, parity checks, benchmarks) uses [`Backend`], so a `cuda` build does all of it on
//! the GPU, and a `tch` build on the CPU with PyTorch's kernels.

use std::sync::Arc;

/// CPU: burn's `flex` backend with autodiff.
#[cfg(not(any(feature = "cuda", feature = "tch")))]
pub type Backend = burn::backend::Autodiff<burn::backend::Flex>;

/// CPU with PyTorch's kernels: burn's LibTorch backend with autodiff (the `tch` feature).
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub type Backend = burn::backend::Autodiff<burn::backend::LibTorch>;

/// GPU: burn's CUDA backend with autodiff.
#[cfg(feature = "cuda")]
pub type Backend = burn::backend::Autodiff<burn::backend::Cuda>;

/// [`Backend`] without autodiff, for inference-only work (evaluating a model under training).
pub type InnerBackend = <Backend as burn::tensor::backend::AutodiffBackend>::InnerBackend;

/// The default device of [`Backend`].
pub fn device() -> burn::tensor::Device<Backend> {
    Default::default()
}

/// Human-readable backend name for reports.
pub fn name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "tch") {
        "libtorch (CPU)"
    } else {
        "flex (CPU)"
    }
}

/// Editors to run side by side on this machine by default: one per CPU core (at batch 1 an
/// edit on the CPU backend keeps about one core busy; see BENCHMARKS.md, "Fleet").
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// CPU threads for each of `workers` editors running side by side: the cores shared out evenly,
/// at least one each.
pub fn kernel_threads_per_worker(workers: usize) -> usize {
    (default_workers() / workers.max(1)).max(1)
}

/// Where an editor's parallel CPU kernels run (burn's `flex` runs them on rayon). By default on
/// the process's shared pool, one thread per core; editors running side by side should each have
/// their own, smaller pool instead: on the shared pool their kernels queue behind each other's
/// (two editors on 2 cores: 1.16× the throughput with a 1-thread pool each, see BENCHMARKS.md,
/// "Fleet"). Cheap to clone; a no-op for the GPU's kernels and for LibTorch's, which run on its
/// own threads (`OMP_NUM_THREADS`).
#[derive(Clone)]
pub struct KernelThreads(Option<Arc<rayon::ThreadPool>>);

impl KernelThreads {
    /// The process's shared pool.
    pub fn shared() -> Self {
        Self(None)
    }

    /// A pool of `threads` threads of its own (named `{name}-kernels-N`).
    pub fn own(threads: usize, name: &str) -> Result<Self, rayon::ThreadPoolBuildError> {
        let name = name.to_owned();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(move |i| format!("{name}-kernels-{i}"))
            .build()?;
        Ok(Self(Some(Arc::new(pool))))
    }

    /// Runs `work` with its kernels on this pool (blocking the calling thread until it ends).
    pub fn run<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }
}

/// `M_TRIM_THRESHOLD` that turns trimming off (mallopt(3)): freed heap stays with the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const NEVER_TRIM: libc::c_int = -1;

/// Extra heap taken whenever the heap grows, so that growth happens in few, large steps.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAP_TOP_PAD_BYTES: libc::c_int = 64 << 20;

/// Tunes glibc's allocator for tensor work; call once at start-up. By default glibc maps every
/// buffer over 32 MiB (one 128-channel 256² activation is 33.5 MB) afresh and unmaps it on free,
/// so each NCSN++ layer pays page faults and the kernel's zeroing of new pages, on the
/// calling thread, between the parallel kernels. Served from the heap instead, freed buffers
/// are reused by the next layer. The heap is never trimmed: an edit's peak (an NCSN++ 256² VJP
/// frees 2.7 GB at once, more than the largest threshold mallopt takes) recurs every iteration,
/// and giving it back only makes the next iteration fault and zero it again. Measured on the
/// 2-core CPU machine (`flowgrad bench ncsnpp`, 256², interleaved pairs; see BENCHMARKS.md). A
/// no-op with another C library.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it takes the allocator's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, NEVER_TRIM);
        libc::mallopt(libc::M_TOP_PAD, HEAP_TOP_PAD_BYTES);
    }
}
