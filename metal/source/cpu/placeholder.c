/* Replaced by the CPU execution layer. */
int gptoss_cpu_device_placeholder;
