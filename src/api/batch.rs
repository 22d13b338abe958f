//! Well-known labels of Jobs and their pods (batch/v1), shared by the Job registry
//! strategy (which writes them) and the Job controller (which reads them).

/// The label (and selector key) naming the Job's uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The pre-1.27 spelling of [`CONTROLLER_UID_LABEL`], still set for old selectors.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The label naming the Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The pre-1.27 spelling of [`JOB_NAME_LABEL`].
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
