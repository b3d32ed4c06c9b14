// The one entry point of the bundle: expose regl-scatterplot to the report page as a global.
import createScatterplot from "regl-scatterplot";

globalThis.createScatterplot = createScatterplot;
