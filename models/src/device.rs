//! Choosing the device: CPU by default; CUDA or Metal when the crate is built with the
//! `cuda` / `metal` feature and the machine has one.
use crate::error::{ModelError, Result};
use candle_core::Device;

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU.
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
    /// The Metal GPU (needs the `metal` feature).
    Metal,
    /// A GPU if this build and machine have one, else the CPU.
    Best,
}

/// Opens the chosen device, with an error saying what is missing when it is unavailable.
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(ordinal) => {
            if !candle_core::utils::cuda_is_available() {
                return Err(ModelError::Device("this build has no CUDA support (feature `cuda`)".into()));
            }
            Device::new_cuda(ordinal).map_err(|e| ModelError::Device(format!("CUDA device {ordinal}: {e}")))
        }
        DeviceChoice::Metal => {
            if !candle_core::utils::metal_is_available() {
                return Err(ModelError::Device("this build has no Metal support (feature `metal`)".into()));
            }
            Device::new_metal(0).map_err(|e| ModelError::Device(format!("Metal: {e}")))
        }
        DeviceChoice::Best => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(device) = Device::new_cuda(0) {
                    return Ok(device);
                }
            }
            if candle_core::utils::metal_is_available() {
                if let Ok(device) = Device::new_metal(0) {
                    return Ok(device);
                }
            }
            Ok(Device::Cpu)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_there_and_best_falls_back() {
        assert!(select_device(DeviceChoice::Cpu).unwrap().is_cpu());
        assert!(select_device(DeviceChoice::Best).is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = select_device(DeviceChoice::Cuda(0)).unwrap_err();
        assert!(err.to_string().contains("cuda"), "{err}");
    }
}
