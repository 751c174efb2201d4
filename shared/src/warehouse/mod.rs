pub mod naming;
#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct WarehouseError;
impl WarehouseError { pub fn is_retryable(&self) -> bool { false } }
