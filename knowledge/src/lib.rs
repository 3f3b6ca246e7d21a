//! DoctorGLM disease library and prompt designer.
