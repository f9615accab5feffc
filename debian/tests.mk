# Included after the top Makefile by debian/rules: prints make check's TESTS
# without those named in LEFT_OUT (the ones dh_auto_test leaves to CI).
print-tests:
	@echo $(filter-out $(LEFT_OUT),$(TESTS))
.PHONY: print-tests
