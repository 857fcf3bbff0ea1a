# COSEM object model: one module per interface-class family (base, data, clock,
# association, sap, hdlc_setup) and the meter's object table (table).
